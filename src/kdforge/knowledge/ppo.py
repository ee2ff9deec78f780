"""RetriKT step 2: PPO on the soft prompt, so the teacher writes better and more varied samples.

RetriKT (arXiv 2310.15594) treats the prompted teacher as a policy pi_P whose only parameters
are the soft prompt P. An episode is one generated sample (its tokens are the actions); the
reward R(x, y) of ``kdforge.knowledge.reward`` comes at the end. As in RLHF (Ziegler et al.
2019, arXiv 1909.08593; Ouyang et al. 2022), the reward is shaped by a KL penalty to the step-1
policy pi_ref, so the prompt keeps writing in-domain text while it chases reward:

    R'_i = R_i - beta * sum_t ( log pi_old(a_t) - log pi_ref(a_t) )

The advantage of a sequence is its whitened shaped reward (the batch mean is the baseline),

    A_i = (R'_i - mean(R')) / (std(R') + 1e-8),

given to each of its tokens, and P follows the clipped surrogate of Schulman et al. (2017,
arXiv 1707.06347, Eq. 7), with r_t = pi_P(a_t) / pi_old(a_t):

    L^CLIP(P) = E_t[ min( r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t ) ],

averaged over the tokens of each sequence, then over sequences (long samples do not dominate),
for a few epochs per batch of rollouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from peft import PeftModel
from torch import Tensor
from tqdm.auto import tqdm

from kdforge.errors import RecipeError
from kdforge.knowledge.lm import hidden
from kdforge.knowledge.prompt_tuning import prompt_embedding, using_prompt
from kdforge.knowledge.sampling import sample_rollouts, sequence_logprobs
from kdforge.models.modes import evaluating

#: ``reward_fn(texts, intended_labels) -> rewards [N]``.
RewardFn = Callable[[list[str], list[int]], Tensor]


def clipped_surrogate(
    logp_new: Tensor, logp_old: Tensor, advantages: Tensor, mask: Tensor, clip: float = 0.2
) -> Tensor:
    """``-L^CLIP`` (a loss to minimise), Schulman et al. 2017 Eq. 7.

    ``logp_new``, ``logp_old`` and ``mask`` are ``[N, T]`` (mask = 1 on action tokens),
    ``advantages`` is ``[N]`` (one per sequence, shared by its tokens).
    """
    ratio = (logp_new - logp_old).exp()
    adv = advantages[:, None]
    objective = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    per_sequence = (objective * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return -per_sequence.mean()


def whiten(values: Tensor) -> Tensor:
    """``(v - mean) / (std + 1e-8)``: the batch-mean baseline, on a unit scale."""
    centred = values - values.mean()
    return centred / (centred.std(unbiased=False) + 1e-8)


def ppo_refine(
    peft_model: PeftModel,
    tokenizer,
    label_words: Sequence[str],
    reward_fn: RewardFn,
    steps: int = 10,
    rollouts_per_step: int = 32,
    *,
    ppo_epochs: int = 4,
    lr: float = 1e-2,
    clip: float = 0.2,
    kl_beta: float = 0.05,
    max_new_tokens: int = 32,
    seed: int = 0,
    progress: bool | None = None,
) -> list[dict]:
    """Step 2: refine the soft prompt of ``peft_model`` in place; return the per-step history.

    Each step samples ``rollouts_per_step`` samples (spread evenly over the labels) with
    temperature 1 and no truncation (the policy PPO assumes), scores them with ``reward_fn``,
    then takes ``ppo_epochs`` Adam steps on the whole batch. The history holds, per step, the
    mean raw ``reward``, the mean sequence ``kl`` to the step-1 prompt and the last ``loss``.
    """
    if steps < 0 or rollouts_per_step < len(label_words) or ppo_epochs < 1 or not 0 < clip < 1 or kl_beta < 0:
        raise RecipeError(
            "PPO needs steps >= 0, rollouts_per_step >= the number of labels, ppo_epochs >= 1, 0 < clip < 1 "
            f"and kl_beta >= 0, got steps={steps}, rollouts_per_step={rollouts_per_step}, "
            f"ppo_epochs={ppo_epochs}, clip={clip}, kl_beta={kl_beta}"
        )
    prompt = prompt_embedding(peft_model)
    reference = prompt.detach().clone()
    optimizer = torch.optim.Adam([prompt], lr=lr)
    per_label = rollouts_per_step // len(label_words)
    history = []
    with evaluating(peft_model):
        for step in tqdm(range(steps), desc="RetriKT step 2: PPO", disable=hidden(progress), leave=False):
            rollouts = sample_rollouts(
                peft_model, tokenizer, label_words, per_label, max_new_tokens=max_new_tokens, seed=seed + step
            )
            rewards = reward_fn([r.text for r in rollouts], [r.label for r in rollouts]).float().cpu()
            with torch.no_grad():
                old, mask = sequence_logprobs(peft_model, rollouts)
                with using_prompt(peft_model, reference):
                    ref, _ = sequence_logprobs(peft_model, rollouts)
            kl = ((old - ref) * mask).sum(-1).cpu()
            advantages = whiten(rewards - kl_beta * kl).to(old.device)
            for _ in range(ppo_epochs):
                new, _ = sequence_logprobs(peft_model, rollouts)
                loss = clipped_surrogate(new, old, advantages, mask, clip)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([prompt], 1.0)
                optimizer.step()
            history.append(
                {"step": step, "reward": float(rewards.mean()), "kl": float(kl.mean()), "loss": float(loss.detach())}
            )
    return history
