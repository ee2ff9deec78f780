"""What a forward pass exposes to distillation methods.

Methods never call models; they read ``Views``. The engine asks each model only for the
views the recipe's methods declare, so a run that needs no attention maps never pays for
them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

#: View names a method may declare in ``Method.needs``.
SEQUENCE_VIEWS = frozenset({"logits", "embedding", "features", "overlap"})
TOKEN_VIEWS = frozenset({"hidden_states", "attentions", "qkv", "token_logits"})
ALL_VIEWS = SEQUENCE_VIEWS | TOKEN_VIEWS
#: The views a retrieving student (RetriKT) can make its queries and its store's keys of.
RETRIEVAL_KEYS = ("embedding", "features", "overlap")


@dataclass
class Views:
    """Tensors of one forward pass. Layer-indexed views use hidden-state numbering.

    ``hidden_states[0]`` is the embedding layer's output and ``hidden_states[i]`` the output
    of transformer block ``i`` (1-based), as Hugging Face returns them. ``attentions[i-1]``,
    ``queries[i-1]`` etc. belong to block ``i``.
    """

    attention_mask: Tensor
    logits: Tensor | None = None  # [B, C]
    # A joint intent + slot model's second head (models/joint.py): slot logits per sub-token.
    token_logits: Tensor | None = None  # [B, T, S]
    embedding: Tensor | None = None  # [B, D] sentence embedding, as the model outputs it
    # A classifier's features: what its output layer reads (a retrieving student's keys can be these).
    features: Tensor | None = None  # [B, F]
    # A pair's word overlap: the share of each text's tokens the other text holds (models/overlap.py).
    overlap: Tensor | None = None  # [B, 2]
    hidden_states: tuple[Tensor, ...] | None = None  # L+1 x [B, T, H]
    attentions: tuple[Tensor, ...] | None = None  # L x [B, heads, T, T], probabilities
    queries: tuple[Tensor, ...] | None = None  # L x [B, heads, T, head_dim]
    keys: tuple[Tensor, ...] | None = None
    values: tuple[Tensor, ...] | None = None
    # A second pass of the same batch (another dropout mask, maybe augmented inputs), for
    # contrastive methods that compare two views of each sentence.
    second: Views | None = None
    # Ranking: the student's pass over each query's candidate passages (``[B * P, ...]``, the
    # ``P`` candidates of query ``b`` in rows ``b * P .. b * P + P - 1``); this pass is the queries'.
    candidates: Views | None = None

    def require(self, name: str, who: str) -> Tensor | tuple[Tensor, ...]:
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"{who} needs the {name!r} view, which the model did not produce")
        return value

    def detach(self) -> Views:
        def cut(value):
            if value is None:
                return None
            if isinstance(value, Views):
                return value.detach()
            if isinstance(value, tuple):
                return tuple(v.detach() for v in value)
            return value.detach()

        return Views(**{f.name: cut(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Views:
        def move(value):
            if value is None:
                return None
            if isinstance(value, Views):
                return value.to(device, dtype)
            if isinstance(value, tuple):
                return tuple(move(v) for v in value)
            if dtype is not None and value.is_floating_point():
                return value.to(device=device, dtype=dtype)
            return value.to(device)

        return Views(**{f.name: move(getattr(self, f.name)) for f in fields(self)})
