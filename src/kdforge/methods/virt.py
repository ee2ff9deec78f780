"""VIRT: distil a cross-encoder's query-passage attention into the bi-encoder's virtual interaction."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from kdforge.errors import IncompatibleError
from kdforge.methods.base import Batch, Method, MethodArgs, Pair, register_method
from kdforge.methods.layer_map import check_map, default_map
from kdforge.methods.ranking import check_ranking_pair
from kdforge.models.views import Views


def first_positions(mask: Tensor, n: int) -> Tensor:
    """``[R, n]``: the positions of each row's first ``n`` marked tokens, in order (then filler)."""
    order = torch.sort((~mask.bool()).to(torch.uint8), dim=1, stable=True).indices
    return order[:, :n]


def take_tokens(x: Tensor, positions: Tensor) -> Tensor:
    """``x [R, H, L, d]`` at ``positions [R, N]`` along the token axis: ``[R, H, N, d]``."""
    index = positions[:, None, :, None].expand(-1, x.size(1), -1, x.size(3))
    return x.gather(2, index)


def virtual_attention(queries: Tensor, keys: Tensor, key_mask: Tensor) -> Tensor:
    """``softmax_j(q_i . k_j / sqrt(d))`` over the other text's real tokens: ``[R, H, Na, Nb]``."""
    scores = torch.matmul(queries.float(), keys.float().transpose(-1, -2)) / queries.size(-1) ** 0.5
    scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


def cross_block(attention: Tensor, rows: Tensor, cols: Tensor, col_mask: Tensor) -> Tensor:
    """The pair's attention from tokens ``rows`` to tokens ``cols``, rows renormalised to sum to 1.

    ``attention [R, H, T, T]`` (probabilities), ``rows [R, Na]``, ``cols [R, Nb]``: ``[R, H, Na, Nb]``.
    """
    heads, length = attention.size(1), attention.size(-1)
    block = attention.float().gather(2, rows[:, None, :, None].expand(-1, heads, -1, length))
    block = block.gather(3, cols[:, None, None, :].expand(-1, heads, rows.size(1), -1))
    block = block * col_mask[:, None, None, :]
    return block / block.sum(-1, keepdim=True).clamp(min=1e-12)


def interaction_mse(student_map: Tensor, teacher_map: Tensor, row_mask: Tensor, col_mask: Tensor) -> Tensor:
    """``||M^S_i - A^T_i||^2`` per real row ``i`` (over real columns), averaged over rows and heads."""
    squared = ((student_map - teacher_map) ** 2 * col_mask[:, None, None, :]).sum(-1)
    rows = row_mask[:, None, :].to(squared.dtype)
    return (squared * rows).sum() / (rows.sum() * squared.size(1)).clamp(min=1)


def virt_loss(
    student_maps: list[tuple[Tensor, Tensor]],
    teacher_maps: list[tuple[Tensor, Tensor]],
    query_mask: Tensor,
    passage_mask: Tensor,
) -> Tensor:
    """``sum_l ||M^S_{q->p} - A^T_{q->p}||^2 + ||M^S_{p->q} - A^T_{p->q}||^2`` (per row, averaged).

    Each list holds one ``(q->p, p->q)`` pair of maps per mapped layer; a map with one head is
    compared with the other side's head average.
    """
    total = query_mask.new_zeros((), dtype=torch.float)
    for (s_qp, s_pq), (t_qp, t_pq) in zip(student_maps, teacher_maps, strict=True):
        if s_qp.size(1) != t_qp.size(1):
            s_qp, s_pq = s_qp.mean(1, keepdim=True), s_pq.mean(1, keepdim=True)
            t_qp, t_pq = t_qp.mean(1, keepdim=True), t_pq.mean(1, keepdim=True)
        total = total + interaction_mse(s_qp, t_qp, query_mask, passage_mask)
        total = total + interaction_mse(s_pq, t_pq, passage_mask, query_mask)
    return total


@register_method("virt")
class VIRT(Method):
    """Virtual interaction: the bi-encoder's cross-text attention imitates the cross-encoder's.

    Li et al., "VIRT: Improving Representation-based Text Matching via Virtual Interaction",
    arXiv 2112.04195, Sec. 3 (interactive knowledge distillation). The student encodes query
    and passage apart, so it has no attention between them; VIRT computes the attention it
    *would* have, ``M^S_{q->p} = softmax(Q_q K_p^T / sqrt(d))`` from the query's queries and the
    passage's keys of the same student block (``p->q`` likewise), and fits it to the teacher's
    attention from query tokens to passage tokens in the concatenated pair, renormalised over the
    passage tokens: ``L_VIRT = sum_l ||M^S_{q->p} - A^T_{q->p}||^2 + ||M^S_{p->q} - A^T_{p->q}||^2``
    (per row, averaged over rows and heads; summed over the mapped layers). ``interaction: hidden``
    uses the hidden states entering the block instead of its queries/keys (one map, compared with
    the teacher's head average); different head counts are compared as head averages too.
    Special tokens are left out (they differ between the pair and the separate texts). The
    paper's output-layer "VIRT-adapted interaction" is not used: the student stays a plain
    bi-encoder. Equation numbers are not cited: the paper text was not available to check them.
    Needs task ``ranking``, the same tokenizer in teacher and student, and is usually combined
    with ``margin_mse`` or ``kl_listwise``.
    """

    token_level = True
    paper = "arXiv:2112.04195"
    summary = "fit the bi-encoder's virtual query-passage attention to the cross-encoder's"

    class Args(MethodArgs):
        layer_map: list[tuple[int, int]] | None = None
        interaction: Literal["attention", "hidden"] = "attention"

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"qkv" if self.args.interaction == "attention" else "hidden_states"})

    def teacher_needs(self) -> frozenset[str]:
        return frozenset({"attentions"})

    def setup(self, pair: Pair) -> None:
        check_ranking_pair(pair, "virt")
        if not pair.same_tokenizer:
            raise IncompatibleError(
                "virt compares token positions, but the teacher and the student tokenize differently; "
                "use margin_mse or kl_listwise"
            )
        t, s = pair.teacher, pair.student
        layer_map = self.args.layer_map or default_map(t, s)
        if any(ti == 0 or si == 0 for ti, si in layer_map):
            raise IncompatibleError("virt: layer 0 is the embedding layer, which has no attention")
        self.layer_map = check_map(layer_map, t.num_layers, s.num_layers, "virt")

    def _student_maps(self, student: Views, layer: int, group: int, spans) -> tuple[Tensor, Tensor]:
        candidates = student.candidates
        assert candidates is not None
        sq, sp, q_valid, p_valid = spans
        if self.args.interaction == "attention":
            q_side = (student.require("queries", "virt")[layer - 1], student.require("keys", "virt")[layer - 1])
            p_side = (candidates.require("queries", "virt")[layer - 1], candidates.require("keys", "virt")[layer - 1])
        else:  # one "head": the hidden states the block's attention reads
            q_state = student.require("hidden_states", "virt")[layer - 1][:, None]
            p_state = candidates.require("hidden_states", "virt")[layer - 1][:, None]
            q_side, p_side = (q_state, q_state), (p_state, p_state)
        q_queries, q_keys = (take_tokens(x.repeat_interleave(group, 0), sq) for x in q_side)
        p_queries, p_keys = (take_tokens(x, sp) for x in p_side)
        return virtual_attention(q_queries, p_keys, p_valid), virtual_attention(p_queries, q_keys, q_valid)

    def forward(self, teacher: Views | None, student: Views, batch: Batch) -> Tensor:
        if teacher is None or student.candidates is None or "query_tokens" not in batch.extra:
            raise IncompatibleError("virt needs ranking batches (task: ranking) and a cross-encoder teacher")
        segments = batch.extra[f"teacher{self.teacher_index}_segments"]
        query_tokens, passage_tokens = batch.extra["query_tokens"], batch.extra["candidate_tokens"]
        group = segments.size(0) // query_tokens.size(0)
        query_tokens = query_tokens.repeat_interleave(group, 0)
        # Truncation cuts texts from the end, so the first n tokens of each side agree in both models.
        n_query = torch.minimum((segments == 1).sum(1), query_tokens.sum(1))
        n_passage = torch.minimum((segments == 2).sum(1), passage_tokens.sum(1))
        nq, np_ = int(n_query.max()), int(n_passage.max())
        if nq == 0 or np_ == 0:
            return student.attention_mask.new_zeros((), dtype=torch.float)
        q_valid = torch.arange(nq, device=segments.device)[None, :] < n_query[:, None]
        p_valid = torch.arange(np_, device=segments.device)[None, :] < n_passage[:, None]
        tq, tp = first_positions(segments == 1, nq), first_positions(segments == 2, np_)
        spans = (first_positions(query_tokens, nq), first_positions(passage_tokens, np_), q_valid, p_valid)
        attentions = teacher.require("attentions", "virt")
        teacher_maps, student_maps = [], []
        for t_layer, s_layer in self.layer_map:
            pair_attention = attentions[t_layer - 1]
            teacher_maps.append(
                (cross_block(pair_attention, tq, tp, p_valid), cross_block(pair_attention, tp, tq, q_valid))
            )
            student_maps.append(self._student_maps(student, s_layer, group, spans))
        return virt_loss(student_maps, teacher_maps, q_valid, p_valid)
