"""Teacher views <-> compact per-row arrays: what a shard holds and how a batch is rebuilt from it.

Rows are stored unpadded (only real tokens), so a row is read back into any batch padding.
- ``logits`` over at most ``top_k`` classes are kept dense (fp32); over more (a vocabulary), as the
  top-k log-probabilities (fp16), their ids (int32) and the remaining probability mass (fp32). Read
  back, the mass is spread evenly over the other ids: the teacher's distribution at temperature 1
  is exact on the top k and keeps its total mass on the tail.
- hidden states and attention maps: fp16, or int8 with one absmax scale per vector.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from kdforge.store.manifest import StoredViews

ROW_KEYS = ("id", "length")


def quantize(x: Tensor) -> tuple[Tensor, Tensor]:
    """int8 codes and the absmax scale of each row vector (``x ~ codes * scale``)."""
    scale = x.abs().amax(dim=-1).float().clamp_min(1e-12) / 127.0
    codes = torch.round(x.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale


def _dense(name: str, x: Tensor, precision: str) -> dict[str, Tensor]:
    if precision == "int8":
        codes, scale = quantize(x)
        return {name: codes, f"{name}.scale": scale}
    return {name: x.to(torch.float16)}


def _logits(rows: Tensor, top_k: int) -> dict[str, Tensor]:
    """``rows [N, C]``: dense when small, else top-k log-probs + ids + tail mass."""
    if rows.size(-1) <= top_k:
        return {"logits": rows.float()}
    logp = torch.log_softmax(rows.float(), dim=-1)
    values, ids = logp.topk(top_k, dim=-1)
    tail = (1.0 - values.exp().sum(-1)).clamp_min(0.0)
    return {"logits.values": values.to(torch.float16), "logits.ids": ids.to(torch.int32), "logits.tail": tail}


def encode(views, ids: Tensor, mask: Tensor, spec: StoredViews) -> dict[str, Tensor]:
    """One batch of teacher ``Views`` as row-major arrays (token rows concatenated, padding dropped)."""
    keep = mask.bool()
    out: dict[str, Tensor] = {"id": ids.long().cpu(), "length": keep.sum(-1).int().cpu()}
    if "embedding" in spec.names:
        out["embedding"] = views.embedding.float().cpu()
    if "logits" in spec.names:
        logits = views.logits.detach().float()
        prefix = "token_" if logits.dim() == 3 else ""  # [B, T, V] rows are tokens, [B, C] sentences
        rows = _logits(logits[keep] if prefix else logits, spec.top_k)
        out.update({prefix + name: value.cpu() for name, value in rows.items()})
    for layer in spec.hidden_layers:
        out.update(_dense(f"hidden.{layer}", views.hidden_states[layer][keep].float().cpu(), spec.precision))
    for layer in spec.attention_layers:
        maps = views.attentions[layer - 1].float()
        values, scales = [], []
        for i in range(maps.size(0)):  # rows differ in length: each is flattened on its own
            n = int(keep[i].sum())
            block = maps[i][:, keep[i]][:, :, keep[i]].reshape(-1, n).cpu()  # [heads * n, n]
            if spec.precision == "int8":
                codes, scale = quantize(block)
                values.append(codes.reshape(-1))
                scales.append(scale)
            else:
                values.append(block.reshape(-1).to(torch.float16))
        out[f"attention.{layer}"] = torch.cat(values)
        if scales:
            out[f"attention.{layer}.scale"] = torch.cat(scales)
    return out


def concatenate(chunks: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}


class ShardRows:
    """Row offsets into one mapped shard's arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], heads: int) -> None:
        self.arrays = arrays
        lengths = arrays["length"].astype(np.int64)
        self.lengths = lengths
        self.tokens = np.concatenate([[0], np.cumsum(lengths)])
        self.maps = np.concatenate([[0], np.cumsum(heads * lengths * lengths)])
        self.map_rows = np.concatenate([[0], np.cumsum(heads * lengths)])
        self.heads = heads

    def _values(self, name: str, start: int, stop: int, scale_start: int, scale_stop: int) -> np.ndarray:
        values = self.arrays[name][start:stop]
        scale = self.arrays.get(f"{name}.scale")
        if scale is None:
            return values
        codes = values.reshape(scale_stop - scale_start, -1).astype(np.float32)
        return codes * scale[scale_start:scale_stop, None]

    def hidden(self, layer: int, row: int) -> np.ndarray:
        a, b = self.tokens[row], self.tokens[row + 1]
        return self._values(f"hidden.{layer}", a, b, a, b)

    def attention(self, layer: int, row: int) -> np.ndarray:
        n = int(self.lengths[row])
        values = self._values(
            f"attention.{layer}", self.maps[row], self.maps[row + 1], self.map_rows[row], self.map_rows[row + 1]
        )
        return values.reshape(self.heads, n, n)


def expand_logits(values: Tensor, ids: Tensor, tail: Tensor, classes: int) -> Tensor:
    """Log-probabilities ``[N, classes]``: the stored top-k, and the tail mass spread over the rest."""
    rest = max(1, classes - values.size(-1))
    fill = torch.log((tail / rest).clamp_min(1e-30))
    out = fill[:, None].expand(-1, classes).clone()
    out.scatter_(-1, ids.long(), values.float())
    return out


def logits_per_token_bytes(classes: int, top_k: int) -> tuple[int, int]:
    """(stored bytes per row at ``top_k``, bytes of the dense fp32 row)."""
    stored = classes * 4 if classes <= top_k else top_k * (2 + 4) + 4
    return stored, classes * 4
