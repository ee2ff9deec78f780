"""The retrieving student's head (RetriKT): the mixture it computes, the siblings it skips, its folder."""

from __future__ import annotations

import math

import pytest
import torch

from kdforge.errors import ModelError
from kdforge.models.retrieval import RetrievalHead
from kdforge.store.samples import write_samples

PROBS = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.1, 0.9]])
KEYS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2]])


@pytest.fixture
def head(tmp_path):
    store = write_samples(tmp_path / "s", ["a", "b", "c", "d"], [0, 1, 0, 1], [0, 0, 1, 2], PROBS, ["x", "y"])
    head = RetrievalHead(store, k=2, temperature=0.5, mix=0.25)
    head.set_keys(KEYS)
    return head


def test_mixture_matches_a_hand_computation(head):
    query = torch.tensor([[2.0, 0.0]])  # cos with the keys: 1, 0, 0.7071, -0.98 -> samples 0 and 2
    logits = torch.tensor([[0.0, math.log(3.0)]])  # student: (0.25, 0.75)
    w = torch.softmax(torch.tensor([1.0, 1 / math.sqrt(2)]) / 0.5, dim=0)
    retrieved = w[0] * PROBS[0] + w[1] * PROBS[2]
    expected = 0.25 * torch.tensor([0.25, 0.75]) + 0.75 * retrieved
    assert head.neighbours(query).tolist() == [[0, 2]]
    assert torch.allclose(head.log_probs(logits, query).exp(), expected.unsqueeze(0), atol=1e-6)


def test_samples_of_the_same_source_are_skipped(head):
    query = torch.tensor([[2.0, 0.0]])
    # sources are [0, 0, 1, 2]: excluding source 0 drops samples 0 and 1, leaving 2 then 3
    assert head.neighbours(query, exclude=torch.tensor([0])).tolist() == [[2, 3]]
    assert head.neighbours(query, exclude=torch.tensor([1])).tolist() == [[0, 1]]


def test_gradients_reach_the_query_and_the_mixing_weight(head):
    query = torch.tensor([[2.0, 0.5]], requires_grad=True)
    logits = torch.zeros(1, 2, requires_grad=True)
    head.log_probs(logits, query)[0, 0].backward()
    assert query.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0 and head.mix_logit.grad != 0


def test_folder_round_trip(head, tmp_path):
    head.save(tmp_path / "student" / "retrieval")
    store = tmp_path / "student" / "retrieval" / "store"
    assert (store / "index.faiss").is_file()
    assert not (store / "keys.safetensors").exists()  # a flat index holds the keys: they are not written twice
    loaded = RetrievalHead.load(tmp_path / "student" / "retrieval")
    assert torch.allclose(loaded.keys, head.keys, atol=1e-6)
    query, logits = torch.randn(5, 2), torch.randn(5, 2)
    assert loaded.k == 2 and loaded.temperature == 0.5
    assert torch.allclose(loaded.mix, head.mix)
    assert torch.allclose(loaded.log_probs(logits, query), head.log_probs(logits, query).detach(), atol=1e-6)


def test_an_empty_index_says_so(tmp_path):
    store = write_samples(tmp_path / "s", ["a"], [0], [0], PROBS[:1], ["x", "y"])
    with pytest.raises(ModelError, match="refresh"):
        RetrievalHead(store).neighbours(torch.ones(1, 2))


# ----- the features view: what a classifier's output layer reads (a retrieval key) -------------


def test_features_view_is_what_the_classifier_layer_reads(classifier_teacher_dir, embedding_teacher_dir):
    from kdforge.errors import IncompatibleError
    from kdforge.models import load_model

    teacher = load_model(str(classifier_teacher_dir))
    texts = ["the cat sees a dog .", "a bird ."]
    features = teacher.rows("features", texts)
    logits = teacher.rows("logits", texts)
    assert features.shape == (2, 32)
    with torch.no_grad():
        assert torch.allclose(teacher.hf.classifier(features.clone()), logits, atol=1e-5)  # W features + b
    assert not torch.allclose(features, teacher.rows("embedding", texts)[:, :32])  # the pooler's, not a mean
    with pytest.raises(IncompatibleError, match="features"):
        load_model(str(embedding_teacher_dir)).rows("features", texts)


def test_a_head_keyed_on_features_keeps_its_key(head, tmp_path):
    head.key = "features"
    head.save(tmp_path / "r")
    assert RetrievalHead.load(tmp_path / "r").key == "features"
    with pytest.raises(ValueError, match="retrieval key is one of embedding, features"):
        RetrievalHead(head.store, key="tokens")


def test_keys_come_from_a_keys_file_or_not_at_all(head, tmp_path):
    from safetensors.torch import save_file

    from kdforge.errors import StoreError

    folder = tmp_path / "r"
    head.save(folder)
    (folder / "store" / "index.faiss").unlink()
    with pytest.raises(StoreError, match="no index.faiss or keys.safetensors"):
        RetrievalHead.load(folder)
    save_file({"keys": head.keys}, str(folder / "store" / "keys.safetensors"))  # as earlier versions wrote it
    loaded = RetrievalHead.load(folder)  # the index is rebuilt from the keys
    assert loaded.neighbours(torch.tensor([[2.0, 0.0]])).tolist() == [[0, 2]]


def test_overlap_key_falls_off_with_the_distance_between_shares():
    from kdforge.models.retrieval import overlap_key

    shares = torch.tensor([[0.5, 0.5], [0.6, 0.5], [0.5, 0.8], [1.0, 0.0]])
    coded = overlap_key(shares)
    assert coded.shape == (4, 22) and torch.allclose(coded.norm(dim=-1), torch.ones(4), atol=1e-6)
    sims = coded @ coded[0]
    # one share 0.1 apart, the other equal: (exp(-0.1^2 / (4 * 0.1^2)) + 1) / 2; 0.3 apart: (exp(-2.25) + 1) / 2
    assert sims[1].item() == pytest.approx((math.exp(-0.25) + 1) / 2, abs=2e-3)
    assert sims[2].item() == pytest.approx((math.exp(-2.25) + 1) / 2, abs=2e-3)
    assert sims[0] > sims[1] > sims[2] > sims[3]


def test_a_head_keyed_on_overlap_retrieves_pairs_that_share_as_much(tmp_path):
    store = write_samples(
        tmp_path / "s", list("abcd"), [0, 1, 0, 1], [0, 1, 2, 3], PROBS, ["x", "y"], pairs=list("efgh")
    )
    head = RetrievalHead(store, k=1, temperature=0.5, mix=0.5, key="overlap")
    head.set_keys(head.coded(torch.tensor([[0.9, 0.9], [0.1, 0.2], [0.5, 0.5], [0.0, 1.0]])))
    query = torch.tensor([[0.15, 0.2], [0.8, 0.85]])  # raw shares, as the student's overlap view gives them
    assert head.neighbours(head.coded(query)).tolist() == [[1], [0]]
    assert torch.allclose(head.retrieved(query), PROBS[[1, 0]], atol=1e-6)


class _FixedModel:
    """Stands in for a student in ``tune_mix``: fixed logits and keys per text."""

    def __init__(self, logits: dict[str, list[float]], keys: dict[str, list[float]]) -> None:
        self.logits, self.keys = logits, keys

    def rows(self, view, texts, pairs=None, batch_size=64):
        table = self.logits if view == "logits" else self.keys
        return torch.tensor([table[t] for t in texts])


def test_tune_mix_fits_lambda_on_the_held_out_examples_only(tmp_path):
    # two sources of two samples each with opposite teachers; whichever is held out, its rows' nearest
    # neighbours in the other source carry the wrong distribution unless the key points home
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    store = write_samples(tmp_path / "s", list("abcd"), [0, 0, 1, 1], [0, 0, 1, 1], probs, ["x", "y"])
    head = RetrievalHead(store, k=2, temperature=0.5, mix=0.5)
    head.set_keys(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]))
    head.hold_out(0.5)
    assert head.held_out.sum() == 2 and head.held_out[0] == head.held_out[1]  # a source goes whole
    held = [t for t, h in zip("abcd", head.held_out.tolist(), strict=True) if h]
    # the student's own prediction is the teacher's there; retrieval (siblings skipped) gives the other source's:
    # lambda 1 fits exactly
    right = {t: probs[i].log().tolist() for i, t in enumerate("abcd")}
    keys = {t: [1.0, 0.0] for t in "abcd"}
    fit = head.tune_mix(_FixedModel(right, keys))
    assert fit["held_out_rows"] == 2 and fit["mix"] > 0.999 and fit["kl"] == pytest.approx(0.0, abs=1e-4)
    assert head.mix.item() == pytest.approx(fit["mix"], abs=1e-5)
    # the student wrong (it would have memorised only its training rows): lambda goes to the retrieval
    wrong = {t: [-v for v in right[t]] for t in "abcd"}
    probs_there = probs[head.held_out]
    fit = head.tune_mix(_FixedModel(wrong, keys))
    own = torch.softmax(torch.tensor([wrong[t] for t in held]), -1)
    retrieved = head.retrieved(torch.tensor([keys[t] for t in held]), head.sources[head.held_out])
    kl = [(probs_there * (probs_there / (m * own + (1 - m) * retrieved)).log()).sum(-1).mean() for m in (0.0, 1.0)]
    assert fit["mix"] < 0.5 and fit["kl"] <= min(kl).item() + 1e-6
    assert fit["teacher_agreement"]["own"] == 0.0


def test_holding_out_needs_examples_on_both_sides(head):
    with pytest.raises(ValueError, match="both need at least one"):
        head.hold_out(0.01)
    with pytest.raises(ModelError, match="hold_out"):
        head.tune_mix(_FixedModel({}, {}))
