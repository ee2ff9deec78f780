"""Sampling from the prompted teacher, and the log-probabilities PPO needs of what it sampled.

A sample of RetriKT (arXiv 2310.15594) is the continuation of ``[soft prompt] "<label word>:"``
up to the first eos or newline. For reinforcement learning (step 2) a sample is an episode
whose actions are its tokens, the stopping token included (stopping is a choice too).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from peft import PeftModel
from torch import Tensor

from kdforge.errors import RecipeError
from kdforge.knowledge.lm import device_of, eos_id, pad_batch, pad_id
from kdforge.knowledge.prompt_tuning import label_prefix_ids
from kdforge.models.modes import evaluating


@dataclass(frozen=True)
class Rollout:
    """One sample: the label it was written for, its prompt ids, its action ids and its text."""

    label: int
    prompt: list[int]
    actions: list[int]
    text: str


def cut_sample(tokenizer, ids: list[int], eos: int) -> tuple[list[int], str]:
    """The action ids (through the first eos, or the token that writes a newline) and the text."""
    stop = ids.index(eos) if eos in ids else None
    kept = ids if stop is None else ids[:stop]
    actions = ids if stop is None else ids[: stop + 1]
    text = tokenizer.decode(kept, skip_special_tokens=True)
    if "\n" in text:
        end = next(k for k in range(1, len(kept) + 1) if "\n" in tokenizer.decode(kept[:k], skip_special_tokens=True))
        actions = kept[:end]
        text = text.split("\n", 1)[0]
    return actions, text.strip()


def sample_rollouts(
    peft_model: PeftModel,
    tokenizer,
    label_words: Sequence[str],
    per_label: int,
    *,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[Rollout]:
    """``per_label`` samples for each label, label by label (so prompts need no padding).

    ``top_k`` is off: with ``temperature=1`` and ``top_p=1`` the samples follow exactly the
    policy whose log-probabilities ``sequence_logprobs`` computes, as PPO assumes.
    """
    if per_label < 1 or max_new_tokens < 1 or temperature <= 0 or not 0 < top_p <= 1:
        raise RecipeError(
            "sampling needs per_label >= 1, max_new_tokens >= 1, temperature > 0 and 0 < top_p <= 1, got "
            f"per_label={per_label}, max_new_tokens={max_new_tokens}, temperature={temperature}, top_p={top_p}"
        )
    eos, pad = eos_id(tokenizer), pad_id(tokenizer)
    device = device_of(peft_model)
    torch.manual_seed(seed)
    rollouts = []
    with torch.no_grad(), evaluating(peft_model):
        for label, prefix in enumerate(label_prefix_ids(tokenizer, label_words)):
            ids = torch.tensor([prefix] * per_label, device=device)
            with warnings.catch_warnings():
                # Unpadded prompts: PEFT's own positions (0, 1, ... over soft prompt + prompt) are the right ones.
                warnings.filterwarnings("ignore", message="Position ids are not supported")
                out = peft_model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=0,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=eos,
                    pad_token_id=pad,
                )
            for row in out[:, len(prefix) :].tolist():
                actions, text = cut_sample(tokenizer, row, eos)
                rollouts.append(Rollout(label, list(prefix), actions, text))
    return rollouts


def generate_samples(
    peft_model: PeftModel,
    tokenizer,
    label_words: Sequence[str],
    per_label: int,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 0.95,
    seed: int = 0,
) -> list[tuple[str, int]]:
    """``(text, label index)`` pairs: ``per_label`` label-conditioned samples for each label."""
    rollouts = sample_rollouts(
        peft_model,
        tokenizer,
        label_words,
        per_label,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    return [(rollout.text, rollout.label) for rollout in rollouts]


def sequence_logprobs(peft_model: PeftModel, rollouts: Sequence[Rollout]) -> tuple[Tensor, Tensor]:
    """Per-token log-probabilities of each rollout's actions under the current soft prompt.

    Returns ``(logp [N, T], mask [N, T])``: ``logp[i, t] = log pi(token_{t+1} | prompt, tokens_<=t)``
    over the unpadded sequence ``prompt + actions``, and ``mask`` marks the action tokens. Gradients
    flow to the soft prompt when called outside ``torch.no_grad``.
    """
    ids, attention = pad_batch([r.prompt + r.actions for r in rollouts], pad=0)
    device = device_of(peft_model)
    ids, attention = ids.to(device), attention.to(device)
    logits = peft_model(input_ids=ids, attention_mask=attention).logits
    logits = logits[:, logits.shape[1] - ids.shape[1] :]  # drop the soft-prompt positions
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = torch.zeros_like(logp)
    for i, rollout in enumerate(rollouts):
        start = len(rollout.prompt) - 1
        mask[i, start : start + len(rollout.actions)] = 1.0
    return logp, mask
