"""The generative knowledge source of RetriKT: the teacher writes and labels its own samples.

RetriKT (Liu et al., Findings of EMNLP 2023, arXiv 2310.15594) compresses an LLM by extracting
its knowledge into a store of labelled samples:

1. soft prompt tuning on the few labelled training texts (``tune_prompt``), so the frozen
   teacher writes in-domain text for a given label;
2. PPO on the soft prompt (``ppo_refine``) under the reward of ``kdforge.knowledge.reward``:
   samples the teacher itself classifies as their intended label, and that are not copies;
3. (here) ``per_label`` samples per label, each labelled by the teacher's soft prediction.

The teacher that labels is the original LM: the adapter is disabled (original weights, no soft
prompt), so the labels are the teacher's knowledge, not the prompt's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from peft import PeftModel
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from kdforge.errors import CheckpointError, DataError
from kdforge.knowledge.checkpoints import PromptCheckpoints
from kdforge.knowledge.lm import ensure_causal_lm, eos_id
from kdforge.knowledge.ppo import ppo_refine
from kdforge.knowledge.prompt_tuning import label_prefix_ids, prompt_embedding, tune_prompt
from kdforge.knowledge.reward import DIVERSITY_WEIGHT, MIN_WORDS, reward
from kdforge.knowledge.sampling import generate_samples
from kdforge.knowledge.verbalizer import label_token_ids, lm_label_probs

#: Seed offsets of the evaluation batch (the same RNG after step 1 and after step 2) and of the
#: store's samples, away from the PPO rollouts' seeds (seed + step).
_EVAL_SEED = 10_007
_STORE_SEED = 20_011


class GenerativeSettings(BaseModel):
    """Knobs of the generative source; defaults follow common prompt-tuning and RLHF practice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_virtual_tokens: int = Field(8, ge=1, description="soft prompt length m")
    sft_epochs: int = Field(20, ge=0, description="step 1 epochs over the training texts")
    sft_lr: float = Field(3e-2, gt=0, description="step 1 learning rate (prompt tuning uses a high one)")
    sft_batch_size: int = Field(8, ge=1)
    ppo_steps: int = Field(20, ge=0, description="step 2 batches of rollouts")
    rollouts_per_step: int = Field(32, ge=2, description="samples per PPO step, spread over the labels")
    ppo_epochs: int = Field(4, ge=1, description="optimisation passes per batch of rollouts")
    ppo_lr: float = Field(1e-2, gt=0)
    clip: float = Field(0.2, gt=0, lt=1, description="PPO clip epsilon")
    kl_beta: float = Field(0.05, ge=0, description="weight of the KL penalty to the step-1 prompt")
    diversity_weight: float = Field(DIVERSITY_WEIGHT, ge=0, description="weight of novelty in the reward")
    min_words: int = Field(MIN_WORDS, ge=1, description="shorter samples get reward 0 and are not kept")
    per_label: int = Field(64, ge=1, description="samples written per label for the store")
    eval_per_label: int = Field(32, ge=1, description="samples per label of the batch that measures the reward")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    batch_size: int = Field(16, ge=1, description="texts per teacher forward when labelling")
    seed: int = 0
    progress: bool | None = Field(None, description="progress bars: None shows them on a terminal only")


@dataclass
class GeneratedKnowledge:
    """The extracted knowledge: samples, the label each was written for, the teacher's soft labels.

    ``rewards_after_sft`` / ``rewards_after_ppo`` are the mean reward of the same seeded fresh batch
    after step 1 and after step 2; ``ppo_history`` is ``ppo_refine``'s per-step record.
    """

    texts: list[str]
    intended: list[int]
    probs: Tensor
    rewards_after_sft: float
    rewards_after_ppo: float
    ppo_history: list[dict] = field(default_factory=list)


def teacher_probs(
    peft_model: PeftModel, tokenizer, texts: Sequence[str], label_words: Sequence[str], batch_size: int = 16
) -> Tensor:
    """The original teacher's soft labels ``[N, C]``: adapter disabled (no soft prompt)."""
    with peft_model.disable_adapter():
        return lm_label_probs(peft_model, tokenizer, texts, label_words, batch_size)


def _validate(lm, tokenizer, train_texts, train_labels, label_words) -> None:
    """Everything that can be wrong with the inputs, before the first teacher forward."""
    ensure_causal_lm(lm)
    eos_id(tokenizer)
    label_token_ids(tokenizer, label_words)
    label_prefix_ids(tokenizer, label_words)
    if len(train_texts) != len(train_labels) or not train_texts:
        raise DataError(
            f"the generative source needs labelled training texts, one label per text: got {len(train_texts)} "
            f"texts and {len(train_labels)} labels"
        )
    bad = sorted({label for label in train_labels if not 0 <= label < len(label_words)})
    if bad:
        raise DataError(f"training labels {bad} are outside 0..{len(label_words) - 1} (one per label word)")


def extract_knowledge(
    lm: nn.Module,
    tokenizer,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    label_words: Sequence[str],
    settings: GenerativeSettings | None = None,
    checkpoints: PromptCheckpoints | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> GeneratedKnowledge:
    """Run RetriKT steps 1 and 2 on ``lm`` and write ``per_label`` teacher-labelled samples per label.

    ``lm``'s weights are never changed (they are frozen: ``requires_grad`` is turned off).
    Samples under ``min_words`` words are dropped, so at most ``per_label * C`` are returned.
    With ``checkpoints``, the prompt is saved after each step and a rerun starts after the last
    step it finds; the samples are the same as an uninterrupted run's (every sampling is seeded).
    """
    s = settings or GenerativeSettings()
    _validate(lm, tokenizer, train_texts, train_labels, label_words)
    resumed = checkpoints.latest() if checkpoints is not None else None
    peft_model = tune_prompt(
        lm,
        tokenizer,
        train_texts,
        train_labels,
        label_words,
        num_virtual_tokens=s.num_virtual_tokens,
        epochs=0 if resumed else s.sft_epochs,
        lr=s.sft_lr,
        batch_size=s.sft_batch_size,
        seed=s.seed,
        progress=s.progress,
    )
    report: dict = {}
    if resumed:
        step, prompt, report = resumed
        _restore_prompt(peft_model, prompt, step, checkpoints)
        log(f"resuming RetriKT's knowledge extraction from the {step} prompt in {checkpoints.folder}")

    def reward_fn(texts: list[str], intended: list[int]) -> Tensor:
        probs = teacher_probs(peft_model, tokenizer, texts, label_words, s.batch_size)
        return reward(probs, intended, texts, train_texts, s.diversity_weight, s.min_words)

    def sample(per_label: int, seed: int) -> tuple[list[str], list[int]]:
        pairs = generate_samples(
            peft_model, tokenizer, label_words, per_label, s.max_new_tokens, s.temperature, s.top_p, seed
        )
        return [text for text, _ in pairs], [label for _, label in pairs]

    def mean_reward() -> float:
        return float(reward_fn(*sample(s.eval_per_label, s.seed + _EVAL_SEED)).mean())

    if "after_sft" not in report:
        report = {"after_sft": mean_reward()}
        if checkpoints is not None:
            checkpoints.save("prompt-tuned", prompt_embedding(peft_model), report)
    if "after_ppo" not in report:
        history = ppo_refine(
            peft_model,
            tokenizer,
            label_words,
            reward_fn,
            s.ppo_steps,
            s.rollouts_per_step,
            ppo_epochs=s.ppo_epochs,
            lr=s.ppo_lr,
            clip=s.clip,
            kl_beta=s.kl_beta,
            max_new_tokens=s.max_new_tokens,
            seed=s.seed,
            progress=s.progress,
        )
        report = {**report, "after_ppo": mean_reward(), "history": history}
        if checkpoints is not None:
            checkpoints.save("ppo-refined", prompt_embedding(peft_model), report)
    texts, intended = sample(s.per_label, s.seed + _STORE_SEED)
    kept = [i for i, text in enumerate(texts) if len(text.split()) >= s.min_words]
    texts, intended = [texts[i] for i in kept], [intended[i] for i in kept]
    probs = teacher_probs(peft_model, tokenizer, texts, label_words, s.batch_size)
    return GeneratedKnowledge(texts, intended, probs, report["after_sft"], report["after_ppo"], report["history"])


def _restore_prompt(peft_model: PeftModel, prompt: Tensor, step: str, checkpoints: PromptCheckpoints) -> None:
    target = prompt_embedding(peft_model)
    if prompt.shape != target.shape:
        raise CheckpointError(
            f"the {step} prompt in {checkpoints.folder} is {tuple(prompt.shape)}, this teacher's is "
            f"{tuple(target.shape)}; delete the folder to start the knowledge stage over"
        )
    with torch.no_grad():
        target.copy_(prompt.to(target.device, target.dtype))
