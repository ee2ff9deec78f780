"""Reading model internals without forking model code: the block list and Q/K/V projections.

Works on any Hugging Face BERT-, RoBERTa-, DistilBERT- and GPT-2-style model by finding
modules by name and recording their outputs with forward hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from kdforge.errors import ModelError

# (query, key, value) attribute paths inside one block, or a fused projection of 3 x hidden.
_SEPARATE_QKV = (
    ("attention.self.query", "attention.self.key", "attention.self.value"),  # BERT, RoBERTa, ELECTRA
    ("attention.q_lin", "attention.k_lin", "attention.v_lin"),  # DistilBERT
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),  # Llama, Mistral, Qwen
)
_FUSED_QKV = ("attn.c_attn",)  # GPT-2


def block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return the dotted name and the ``ModuleList`` of transformer blocks."""
    count = num_layers(model.config)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == count
    ]
    if not candidates:
        raise ModelError(f"cannot find the {count} transformer blocks of {type(model).__name__}")
    return min(candidates, key=lambda item: item[0].count("."))


def num_layers(config) -> int:
    for key in ("num_hidden_layers", "n_layer", "n_layers", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ModelError(f"cannot read the layer count of a {type(config).__name__}")


def num_heads(config) -> int:
    for key in ("num_attention_heads", "n_head", "n_heads"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ModelError(f"cannot read the attention-head count of a {type(config).__name__}")


def hidden_size(config) -> int:
    for key in ("hidden_size", "n_embd", "dim", "d_model"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ModelError(f"cannot read the hidden size of a {type(config).__name__}")


def _qkv_modules(block: nn.Module) -> tuple[nn.Module, ...]:
    for paths in _SEPARATE_QKV:
        try:
            return tuple(block.get_submodule(p) for p in paths)
        except AttributeError:
            continue
    for path in _FUSED_QKV:
        try:
            return (block.get_submodule(path),)
        except AttributeError:
            continue
    raise ModelError(
        f"cannot find the query/key/value projections in a {type(block).__name__}; "
        "supported: BERT/RoBERTa, DistilBERT, GPT-2 and Llama-style attention"
    )


def _split_heads(x: Tensor, heads: int) -> Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


@contextmanager
def record_qkv(model: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """Record per-layer queries, keys and values ``[B, heads, T, head_dim]`` during a forward.

    Only the multi-head-attention layout with as many K/V heads as Q heads is supported
    (grouped-query attention has fewer K/V heads; methods then see those).
    """
    _, blocks = block_list(model)
    heads = num_heads(model.config)
    kv_heads = getattr(model.config, "num_key_value_heads", None) or heads
    record: dict[str, list[Tensor]] = {"queries": [], "keys": [], "values": []}
    handles = []

    def keep(name: str, n_heads: int):
        def hook(_module, _inputs, output):
            record[name].append(_split_heads(output, n_heads))

        return hook

    def keep_fused(_module, _inputs, output):
        q, k, v = output.split(output.size(-1) // 3, dim=-1)
        record["queries"].append(_split_heads(q, heads))
        record["keys"].append(_split_heads(k, heads))
        record["values"].append(_split_heads(v, heads))

    for block in blocks:
        modules = _qkv_modules(block)
        if len(modules) == 3:
            for name, module, n in zip(
                ("queries", "keys", "values"), modules, (heads, kv_heads, kv_heads), strict=True
            ):
                handles.append(module.register_forward_hook(keep(name, n)))
        else:
            handles.append(modules[0].register_forward_hook(keep_fused))
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def attention_scores(queries: Tensor, keys: Tensor) -> Tensor:
    """Unnormalized scaled dot-product scores ``Q K^T / sqrt(d)`` (TinyBERT's fitting target)."""
    return torch.matmul(queries, keys.transpose(-1, -2)) / queries.size(-1) ** 0.5


BlockRewrite = Callable[[Tensor, tuple, dict], Tensor]


@contextmanager
def rewrite_blocks(model: nn.Module, rewrites: dict[int, BlockRewrite]) -> Iterator[None]:
    """Inside the ``with`` statement, block ``i``'s hidden-state output becomes ``rewrites[i](output, args, kwargs)``.

    ``args`` and ``kwargs`` are the block's own call arguments (``args[0]`` is its input hidden
    state), so a rewrite may run other blocks on the same input (Theseus) or splice values into
    the output (DIITO). Works whether the block returns a tensor or a tuple led by the hidden state.
    """
    _, blocks = block_list(model)

    def hook_for(rewrite: BlockRewrite):
        def hook(_module, args, kwargs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            new = rewrite(hidden, args, kwargs)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    handles = [blocks[i].register_forward_hook(hook_for(f), with_kwargs=True) for i, f in rewrites.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def call_block(block: nn.Module, hidden: Tensor, args: tuple, kwargs: dict) -> Tensor:
    """Run ``block`` on ``hidden`` with another block's remaining call arguments; its hidden-state output."""
    out = block(hidden, *args[1:], **kwargs) if args else block(**{**kwargs, "hidden_states": hidden})
    return out[0] if isinstance(out, tuple) else out
