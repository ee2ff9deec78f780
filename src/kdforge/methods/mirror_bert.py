"""Mirror-BERT: a sentence and its randomly span-masked copy are positives (symmetric InfoNCE)."""

from __future__ import annotations

import torch
from pydantic import NonNegativeInt, PositiveFloat
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.contrastive import nt_xent
from kdforge.models.views import Views


def mask_random_span(
    input_ids: Tensor, attention_mask: Tensor, span: int, mask_id: int, special: Tensor, seed: int
) -> Tensor:
    """Replace ``span`` consecutive real, non-special tokens of each sequence with the mask token."""
    generator = torch.Generator().manual_seed(seed)
    masked = input_ids.clone()
    for row in range(input_ids.size(0)):
        eligible = (attention_mask[row].bool() & ~special[row].bool()).nonzero().flatten().tolist()
        if len(eligible) <= span or span == 0:
            continue
        start = int(torch.randint(len(eligible) - span + 1, (), generator=generator))
        masked[row, eligible[start : start + span]] = mask_id
    return masked


@register_method("mirror_bert")
class MirrorBERT(Method):
    """Self-supervised "mirror" views: dropout plus random span masking, symmetric InfoNCE.

    Liu et al., "Fast, Effective, and Self-Supervised: Transforming Masked Language Models into
    Universal Lexical and Sentence Encoders", arXiv 2104.08027, Sec. 2: positives are a string and
    its copy with a random span masked (input space) under independent dropout (feature space);
    Eq. 1 is the InfoNCE over both views of the batch, ``tau = 0.04`` for sentences. The paper
    masks 5 characters of the raw string; here ``span_tokens`` word pieces are masked.
    """

    needs = frozenset({"embedding"})
    needs_teacher = False
    second_view = "span_mask"
    paper = "arXiv:2104.08027"
    summary = "symmetric InfoNCE between a sentence and its span-masked, re-dropped copy (no teacher)"

    class Args(MethodArgs):
        temperature: PositiveFloat = 0.04
        span_tokens: NonNegativeInt = 2

    def setup(self, pair: Pair) -> None:
        if pair.student.kind != "embedding":
            raise IncompatibleError("mirror_bert trains sentence embeddings (task: sts)")

    def augment(self, inputs: dict[str, Tensor], batch: Batch, tokenizer) -> dict[str, Tensor]:
        if tokenizer.mask_token_id is None:
            raise IncompatibleError("mirror_bert masks spans, but the student's tokenizer has no mask token")
        ids = inputs["input_ids"]
        special = torch.tensor(
            [tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True) for row in ids.tolist()],
            device=ids.device,
        )
        masked = mask_random_span(
            ids,
            inputs["attention_mask"],
            self.args.span_tokens,
            tokenizer.mask_token_id,
            special,
            batch.seed * 1_000_003 + batch.step,
        )
        return {**inputs, "input_ids": masked}

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        second = student.second
        assert second is not None
        return nt_xent(
            student.require("embedding", "mirror_bert"),
            second.require("embedding", "mirror_bert"),
            self.args.temperature,
        )
