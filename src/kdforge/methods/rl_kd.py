"""RL-KD: a policy network learns, per sample, which teachers' soft targets to use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor, nn

from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.multi_teacher import check_classifiers, per_sample_kl
from kdforge.models.views import Views


def policy_log_likelihood(probabilities: Tensor, actions: Tensor) -> Tensor:
    """``log pi(a | s) = a log sigma + (1 - a) log(1 - sigma)`` per sample and teacher."""
    p = probabilities.clamp(1e-6, 1 - 1e-6)
    return actions * p.log() + (1 - actions) * (1 - p).log()


class TeacherSelectionPolicy(nn.Module):
    """``pi(a_i | s_i) = sigma(W s_i + b)`` over the state of each (sample, teacher) pair."""

    def __init__(self, state_size: int) -> None:
        super().__init__()
        self.score = nn.Linear(state_size, 1)

    def forward(self, states: Tensor) -> Tensor:  # [B, N, state] -> [B, N]
        return torch.sigmoid(self.score(states).squeeze(-1))


def teacher_states(teacher_logits: list[Tensor], labels: Tensor) -> Tensor:
    """State of each (sample, teacher): the teacher's soft prediction and its loss on the gold label."""
    rows = []
    for z in teacher_logits:
        p = F.softmax(z.float(), -1)
        loss = F.cross_entropy(z.float(), labels, reduction="none")
        rows.append(torch.cat([p, loss[:, None]], -1))
    return torch.stack(rows, 1).detach()  # [B, N, C + 1]


@register_method("rl_kd")
class RLKD(Method):
    """Reinforced multi-teacher selection, trained by REINFORCE along with the student.

    Yuan et al., "Reinforced Multi-Teacher Selection for Knowledge Distillation",
    arXiv 2012.06048, Sec. 3: for each training sample a policy ``pi(a_i | s_i) = sigma(W s_i + b)``
    decides whether teacher i's soft targets are used (``a_i ~ Bernoulli``); the student minimises
    ``mean(a_i KD_i)``; the policy is updated with ``-R log pi(a | s)`` where the reward ``R`` is the
    negative student cross-entropy after the update (here: the step after the actions were
    taken, as GKD does). The state is the teacher's soft prediction and its own loss on the gold
    label (the paper adds a [CLS] embedding from a further encoder). Needs labels.
    """

    needs = frozenset({"logits"})
    needs_labels = True
    multi_teacher = True
    paper = "arXiv:2012.06048"
    summary = "policy network picks teachers per sample (REINFORCE on the student's loss)"

    class Args(MethodArgs):
        temperature: PositiveFloat = 1.0

    def setup(self, pair: Pair) -> None:
        check_classifiers(pair, "rl_kd")
        self.policy = TeacherSelectionPolicy(pair.student.num_labels + 1)  # type: ignore[operator]
        self._last: tuple[Tensor, Tensor] | None = None  # states and actions awaiting their reward

    def forward(self, teacher: list[Views], student: Views, batch: Batch) -> Tensor:  # type: ignore[override]
        labels = batch.labels
        assert labels is not None
        logits = student.require("logits", "rl_kd")
        teacher_logits = [t.require("logits", "rl_kd") for t in teacher]
        states = teacher_states(teacher_logits, labels)
        probabilities = self.policy(states)
        generator = torch.Generator(device="cpu").manual_seed(batch.seed * 1_000_003 + batch.step)
        actions = (
            torch.rand(probabilities.shape, generator=generator).to(probabilities.device) < probabilities.detach()
        ).float()
        kd = torch.stack([per_sample_kl(logits, z, self.args.temperature) for z in teacher_logits], -1)  # [B, N]
        loss = (actions * kd).mean()
        if self._last is not None and self.training:
            # the student's current loss rewards the selection made one step earlier
            reward = -F.cross_entropy(logits.detach().float(), labels)
            last_states, last_actions = self._last
            loss = loss - reward * policy_log_likelihood(self.policy(last_states), last_actions).mean()
        if self.training:
            self._last = (states, actions)
        return loss
