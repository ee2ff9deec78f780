"""A ``kind: knowledge`` stage: fill a sample store with a teacher's knowledge of the task.

RetriKT's steps 1-3 up to the store (arXiv 2310.15594): a source extracts samples with the
teacher's soft predictions (encoder.py: perturbed task examples; generative.py: soft-prompted,
PPO-refined generation), and the store keeps them for the students that retrieve from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import datasets
import torch

from kdforge.errors import ModelError
from kdforge.knowledge.checkpoints import PromptCheckpoints
from kdforge.knowledge.encoder import KnowledgeSamples, encoder_knowledge
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import KnowledgeSpec
from kdforge.store.samples import SampleStore, write_samples
from kdforge.tasks.data import load_source


def extract(
    spec: KnowledgeSpec,
    teacher: TextModel,
    dataset: datasets.Dataset,
    num_labels: int,
    seed: int,
    checkpoints: PromptCheckpoints | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[KnowledgeSamples, dict]:
    """The samples of ``spec.source`` and what the source reports about itself.

    ``checkpoints`` lets the generative source resume after a finished step; the encoder source
    labels its samples in minutes and simply reruns.
    """
    if spec.source == "encoder":
        if teacher.kind != "classifier":
            raise ModelError(
                "knowledge.source encoder: the teacher labels samples, so it must be a classifier "
                f"(it is a {teacher.kind}); fine-tune it in an earlier stage, or use source: generative"
            )
        unlabeled = None
        if spec.unlabeled:
            parts = [load_source(source, "train") for source in spec.unlabeled]
            columns = ["text", "text_pair"] if all("text_pair" in p.column_names for p in parts) else ["text"]
            unlabeled = datasets.concatenate_datasets([p.select_columns(columns) for p in parts])
        return encoder_knowledge(dataset, teacher, spec.copies, spec.augment, seed, unlabeled), {}
    return generative(spec, teacher, dataset, num_labels, seed, checkpoints, log)


def generative(
    spec: KnowledgeSpec,
    teacher: TextModel,
    dataset: datasets.Dataset,
    num_labels: int,
    seed: int,
    checkpoints: PromptCheckpoints | None,
    log: Callable[[str], None],
) -> tuple[KnowledgeSamples, dict]:
    """RetriKT steps 1-2 on a causal-LM teacher, then its own labelled samples (generative.py)."""
    from kdforge.knowledge.generative import GenerativeSettings, extract_knowledge

    if teacher.kind != "causal_lm":
        raise ModelError(f"knowledge.source generative: the teacher must be a causal LM (it is a {teacher.kind})")
    if len(spec.label_words or []) != num_labels:
        raise ModelError(f"knowledge.label_words has {len(spec.label_words or [])} words for {num_labels} labels")
    if "text_pair" in dataset.column_names:
        raise ModelError("knowledge.source generative writes single texts; this task's examples are pairs")
    settings = GenerativeSettings(
        num_virtual_tokens=spec.prompt_tokens,
        sft_epochs=spec.prompt_epochs,
        ppo_steps=spec.ppo_steps,
        per_label=spec.per_label,
        max_new_tokens=spec.max_new_tokens,
        seed=seed,
    )
    made = extract_knowledge(
        teacher.hf,
        teacher.tokenizer,
        list(dataset["text"]),
        list(dataset["label"]),
        spec.label_words,
        settings,
        checkpoints,
        log,
    )
    sources = [-(row + 1) for row in range(len(made.texts))]  # generated: each sample is its own source
    samples = KnowledgeSamples(made.texts, None, made.intended, sources, made.probs)
    return samples, {"reward_after_prompt_tuning": made.rewards_after_sft, "reward_after_ppo": made.rewards_after_ppo}


def build_knowledge(
    spec: KnowledgeSpec,
    teacher: TextModel,
    dataset: datasets.Dataset,
    label_names: list[str],
    folder: Path,
    seed: int,
    checkpoints: PromptCheckpoints | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[SampleStore, dict]:
    """Extract, write the store, and summarise it (sample count, size, how often the teacher agrees
    with the label each sample stands for)."""
    started = time.perf_counter()
    samples, report = extract(spec, teacher, dataset, len(label_names), seed, checkpoints, log)
    store = write_samples(
        folder,
        samples.texts,
        samples.labels,
        samples.sources,
        samples.probs,
        label_names,
        samples.pairs,
        meta={"source": spec.source, "teacher": teacher.name},
    )
    agree = (samples.probs.argmax(-1) == torch.tensor(samples.labels)).float().mean().item() * 100
    summary = {
        "samples": len(store),
        "store_megabytes": store.size_bytes() / 1e6,
        "teacher_agrees_with_intended_label": agree,
        "seconds": time.perf_counter() - started,
        **report,
    }
    return store, summary
