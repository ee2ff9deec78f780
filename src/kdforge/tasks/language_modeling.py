"""Language modelling tasks: masked (BERT-style) and causal (GPT-style), for pre-training distillation."""

from __future__ import annotations

import math

import datasets
import torch
import torch.nn.functional as F

from kdforge.methods.base import Batch
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import DataSource
from kdforge.tasks.base import Task, register_task
from kdforge.tasks.data import sentences_of

IGNORE = -100


def mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, tokenizer, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: pick ``probability`` of the real tokens; 80% -> [MASK], 10% random, 10% kept.

    Returns the corrupted ids and the labels (original ids at picked positions, -100 elsewhere).
    """
    picked = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE))
    roll = torch.rand(input_ids.shape, generator=generator)
    corrupted = input_ids.clone()
    corrupted[picked & (roll < 0.8)] = tokenizer.mask_token_id
    random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator)
    swap = picked & (roll >= 0.8) & (roll < 0.9)
    corrupted[swap] = random_ids[swap]
    return corrupted, labels


class LanguageModelling(Task):
    """What both language-modelling tasks share: any text trains them, and the text is the target."""

    default_metric = "accuracy"

    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        return sentences_of(sources)

    def has_targets(self, ds: datasets.Dataset) -> bool:
        return True  # masked or next tokens, made from the text in ``prepare_batch``

    def is_labelled(self, ds: datasets.Dataset) -> bool:
        return "text" in ds.column_names and len(ds) > 0


@register_task("mlm")
class MaskedLM(LanguageModelling):
    """Masked language modelling on unlabeled sentences (the pre-training stage of PD, DistilBERT, GLMD).

    Every batch masks 15% of the real tokens (BERT's 80/10/10 rule), anew each epoch but the
    same on a rerun; teacher and student see the same corrupted text; ``batch.labels`` holds the
    original ids at masked positions. Metrics: masked-token accuracy and perplexity.
    """

    kind = "masked_lm"
    inputs_vary = True
    probability = 0.15

    def prepare_batch(self, batch: Batch, tokenizer, epoch: int) -> Batch:
        if tokenizer.mask_token_id is None:
            from kdforge.errors import ModelError

            raise ModelError("task mlm needs a tokenizer with a mask token")
        ids = batch.student_inputs["input_ids"]
        special = torch.tensor(
            [tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True) for row in ids.tolist()],
            dtype=torch.bool,
        ) | (batch.student_inputs["attention_mask"] == 0)
        seed = int(epoch * 1_000_003 + sum(int(i) * 7919 for i in batch.index.tolist())) % (2**62)
        corrupted, labels = mask_tokens(ids, special, tokenizer, self.probability, torch.Generator().manual_seed(seed))
        inputs = {**batch.student_inputs, "input_ids": corrupted}
        shared = [d is batch.student_inputs for d in batch.teacher_inputs]
        batch.teacher_inputs = [inputs if same else d for d, same in zip(batch.teacher_inputs, shared, strict=True)]
        batch.student_inputs = inputs
        batch.labels = labels
        return batch

    @torch.inference_mode()
    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        model.eval()
        correct = total = 0
        nll = 0.0
        texts = list(ds["text"])
        for start in range(0, len(texts), batch_size):
            rows = [{"text": t, "index": start + i} for i, t in enumerate(texts[start : start + batch_size])]
            inputs = model.tokenize([r["text"] for r in rows])
            batch = self.prepare_batch(Batch(inputs, [], torch.tensor([r["index"] for r in rows])), model.tokenizer, 0)
            batch = batch.to(model.device)
            logits = model(batch.student_inputs).logits.float()
            picked = batch.labels != IGNORE
            if not picked.any():
                continue
            nll += F.cross_entropy(logits[picked], batch.labels[picked], reduction="sum").item()
            correct += (logits[picked].argmax(-1) == batch.labels[picked]).sum().item()
            total += int(picked.sum())
        return {"accuracy": correct / max(total, 1) * 100, "perplexity": math.exp(nll / max(total, 1))}


@register_task("lm")
class CausalLM(LanguageModelling):
    """Causal language modelling on text (decoder distillation: forward/reverse KL, JSD, TVD).

    ``batch.labels`` are the input ids with padding ignored (the model shifts them). Metric:
    perplexity (lower is better) and next-token accuracy.
    """

    kind = "causal_lm"

    def prepare_batch(self, batch: Batch, tokenizer, epoch: int) -> Batch:
        ids = batch.student_inputs["input_ids"]
        batch.labels = ids.masked_fill(batch.student_inputs["attention_mask"] == 0, IGNORE)
        return batch

    @torch.inference_mode()
    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        model.eval()
        nll, correct, total = 0.0, 0, 0
        texts = list(ds["text"])
        for start in range(0, len(texts), batch_size):
            inputs = {k: v.to(model.device) for k, v in model.tokenize(texts[start : start + batch_size]).items()}
            logits = model(inputs).logits.float()[:, :-1]
            targets = inputs["input_ids"][:, 1:]
            keep = inputs["attention_mask"][:, 1:].bool()
            nll += F.cross_entropy(logits[keep], targets[keep], reduction="sum").item()
            correct += (logits[keep].argmax(-1) == targets[keep]).sum().item()
            total += int(keep.sum())
        return {"perplexity": math.exp(nll / max(total, 1)), "accuracy": correct / max(total, 1) * 100}
