"""The pQRNN student: hashed ternary projection, QRNN fo-pooling scan, heads, export and distillation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn

import kdforge
from kdforge.errors import IncompatibleError, ModelError
from kdforge.models import build_student, load_model
from kdforge.models.pqrnn import (
    PQRNNConfig,
    PQRNNForSequenceClassification,
    PQRNNForTokenClassification,
    fo_pooling,
    hash_coefficients,
    linear_scan,
    parameter_count,
    ternary_projection,
)
from kdforge.models.text_model import TextModel
from kdforge.recipe import StudentSpec, validate_recipe
from kdforge.recipe.schema import PQRNNSpec
from tests.conftest import bert_config, classification_recipe, make_tokenizer, sentences

ROOT = Path(__file__).resolve().parents[2]
TINY = {"features": 64, "hidden": 16, "layers": 2, "kernel": 2}  # bottleneck: 2 x hidden = 32


def project(ids: torch.Tensor, features: int = 64, seed: int = 0) -> torch.Tensor:
    return ternary_projection(ids, torch.tensor(hash_coefficients(features, seed)), features)


# ----- projection -------------------------------------------------------------------------------


def test_projection_is_deterministic_across_calls_and_processes():
    ids = torch.arange(500).view(5, 100)
    features = project(ids, seed=7)
    assert torch.equal(features, project(ids, seed=7))
    assert not torch.equal(features, project(ids, seed=8))
    code = (
        "import torch; from tests.models.test_pqrnn import project; "
        "print(project(torch.arange(500).view(5, 100), seed=7).flatten().tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # another process, another string-hash salt
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    assert features.flatten().tolist() == json.loads(other.stdout)


def test_projection_is_ternary_with_the_designed_frequencies():
    features = project(torch.arange(20_000).view(1, -1))  # 1.28M features
    assert set(features.unique().tolist()) == {-1.0, 0.0, 1.0}
    assert abs((features == 0).float().mean().item() - 0.5) < 0.01
    assert abs((features == 1).float().mean().item() - 0.25) < 0.01
    assert abs((features == -1).float().mean().item() - 0.25) < 0.01
    assert abs(features.mean().item()) < 0.01  # no feature is biased to one sign


def test_distinct_ids_agree_on_three_eighths_of_features_and_never_collide():
    features = project(torch.arange(5_000).view(1, -1))[0]  # F = 64
    agree = (features[::2] == features[1::2]).float().mean().item()  # 2,500 disjoint pairs
    assert abs(agree - 3 / 8) < 0.01  # P(both 0) + P(both +1) + P(both -1) = 1/4 + 1/16 + 1/16
    assert features.unique(dim=0).shape[0] == 5_000  # no two ids share a full vector


def test_projection_has_no_table_and_takes_any_id():
    big = torch.tensor([[0, 2**31 - 2, 250_000, 10**12]])
    assert project(big).shape == (1, 4, 64)


# ----- QRNN fo-pooling --------------------------------------------------------------------------


def naive_fo_pooling(z, f, o, mask, reverse: bool):
    """Bradbury et al. Eq. 3-4 step by step; a padded step keeps the state and outputs zero."""
    out = torch.zeros_like(z)
    for row in range(z.shape[0]):
        c = torch.zeros_like(z[row, 0])
        steps = range(z.shape[1] - 1, -1, -1) if reverse else range(z.shape[1])
        for t in steps:
            if mask[row, t]:
                c = f[row, t] * c + (1 - f[row, t]) * z[row, t]
                out[row, t] = o[row, t] * c
    return out


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_scan_matches_a_naive_loop_with_padding(reverse):
    generator = torch.Generator().manual_seed(0)
    shape = (4, 13, 6)
    z = torch.rand(shape, generator=generator) * 2 - 1
    f, o = torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)
    mask = torch.ones(4, 13)
    mask[1, 9:] = 0  # right padding
    mask[2, :4] = 0  # left padding
    mask[3, 1:] = 0  # one real token
    want = naive_fo_pooling(z, f, o, mask, reverse)
    got = fo_pooling(z, f, o, mask.unsqueeze(-1), reverse)
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    # more doubling steps than the length needs (as an exported graph runs) change nothing
    assert torch.equal(fo_pooling(z, f, o, mask.unsqueeze(-1), reverse, steps=9), got)


def test_scan_solves_the_linear_recurrence_over_long_sequences():
    a, b = torch.rand(2, 300, 3, dtype=torch.float64), torch.randn(2, 300, 3, dtype=torch.float64)
    c, states = torch.zeros(2, 3, dtype=torch.float64), []
    for t in range(300):
        c = a[:, t] * c + b[:, t]
        states.append(c)
    assert torch.allclose(linear_scan(a, b, steps=9), torch.stack(states, 1), atol=1e-12)


# ----- models -----------------------------------------------------------------------------------


def tiny_config(**extra) -> PQRNNConfig:
    return PQRNNConfig(
        projection_features=64, bottleneck_size=16, state_size=16, num_hidden_layers=2, dropout=0.0, **extra
    )


@pytest.mark.parametrize("cls", [PQRNNForSequenceClassification, PQRNNForTokenClassification])
def test_padding_never_changes_a_sentences_outputs(cls):
    torch.manual_seed(0)
    model = cls(tiny_config(num_labels=3)).eval()
    short, long = torch.tensor([[2, 17, 30, 3]]), torch.tensor([[2, 9, 12, 40, 41, 33, 3]])
    batch = torch.zeros(2, 7, dtype=torch.long)
    batch[0, :4], batch[1] = short[0], long[0]
    mask = (batch != 0).long()
    alone = model(input_ids=short, attention_mask=torch.ones_like(short)).logits
    batched = model(input_ids=batch, attention_mask=mask).logits
    assert torch.allclose(batched[0, : alone.shape[1]] if batched.dim() == 3 else batched[0], alone[0], atol=1e-6)


def test_parameter_count_follows_the_formula_and_not_the_vocabulary():
    small = PQRNNForSequenceClassification(tiny_config(vocab_size=100, num_labels=7))
    large = PQRNNForSequenceClassification(tiny_config(vocab_size=250_000, num_labels=7))
    count = sum(p.numel() for p in small.parameters())
    assert count == sum(p.numel() for p in large.parameters()) == parameter_count(64, 16, 16, 2, 2, 7)
    tagger = PQRNNForTokenClassification(tiny_config(num_labels=7))
    assert sum(p.numel() for p in tagger.parameters()) == parameter_count(64, 16, 16, 2, 2, 7, "token_classifier")
    default = PQRNNSpec()  # the defaults fit 100x under a 22.7M-parameter MiniLM teacher
    for labels, kind in ((7, "classifier"), (72, "token_classifier"), (127, "token_classifier")):
        size = parameter_count(default.features, 2 * default.hidden, default.hidden, 2, default.kernel, labels, kind)
        assert size <= 227_000, (labels, kind, size)


@pytest.mark.filterwarnings("ignore:Constant folding")
def test_onnx_export_serves_every_length_up_to_the_maximum(tmp_path):
    ort = pytest.importorskip("onnxruntime")

    class Logits(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    torch.manual_seed(0)
    model = PQRNNForTokenClassification(tiny_config(num_labels=3, max_position_embeddings=64)).eval()
    ids = torch.randint(0, 30_000, (2, 6))
    axes = {0: "batch", 1: "length"}
    torch.onnx.export(
        Logits(model).eval(),
        (ids, torch.ones_like(ids)),
        tmp_path / "pqrnn.onnx",
        input_names=["input_ids", "attention_mask"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes},
        dynamo=False,
    )
    session = ort.InferenceSession(str(tmp_path / "pqrnn.onnx"))
    for length in (3, 41, 64):  # shorter and longer than the traced 6
        ids = torch.randint(0, 30_000, (3, length))
        mask = torch.ones_like(ids)
        mask[2, length // 2 :] = 0
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        assert torch.allclose(torch.from_numpy(got), model(input_ids=ids, attention_mask=mask).logits, atol=1e-5)


@pytest.fixture(scope="module")
def classifier_teacher(classifier_teacher_dir) -> TextModel:
    return load_model(str(classifier_teacher_dir))


def test_student_mirrors_the_teacher_and_reports_no_attention(classifier_teacher):
    student, report = build_student(classifier_teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY)))
    assert isinstance(student.hf, PQRNNForSequenceClassification) and student.kind == "classifier"
    assert student.num_labels == 2 and student.hf.config.id2label == classifier_teacher.hf.config.id2label
    assert student.tokenizer.get_vocab() == classifier_teacher.tokenizer.get_vocab()
    assert (student.num_layers, student.hidden_size, student.num_heads) == (2, 32, 0)
    assert report.source == "pqrnn" and report.copied == 0 and report.fresh == len(student.hf.state_dict())
    assert f"{student.num_parameters():,} parameters" in report.describe()
    views = student(student.tokenize(["the cat sees a dog .", "a bird ."]), frozenset({"logits", "hidden_states"}))
    assert views.logits.shape == (2, 2)
    assert [h.shape[-1] for h in views.hidden_states] == [32, 32, 32]  # bottleneck, then each QRNN layer
    narrow, _ = build_student(classifier_teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY, bottleneck=8)))
    assert narrow(student.tokenize(["a bird ."]), frozenset({"hidden_states"})).hidden_states[0].shape[-1] == 8


def test_save_and_load_give_identical_logits(classifier_teacher, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from kdforge.export import save_hf

    student, _ = build_student(classifier_teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY, seed=5)))
    save_hf(student, tmp_path / "s")
    assert (tmp_path / "s" / "model.safetensors").is_file()
    reloaded = load_model(str(tmp_path / "s"))
    texts = sentences(6, seed=3)
    assert reloaded.kind == "classifier" and reloaded.hf.config.projection_seed == 5
    assert torch.equal(reloaded.predict(texts), student.predict(texts))
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s")  # no trust_remote_code
    assert isinstance(plain, PQRNNForSequenceClassification)


def test_token_classifier_student_tags_every_token():
    from transformers import BertForTokenClassification

    torch.manual_seed(0)
    teacher = TextModel(
        BertForTokenClassification(bert_config(num_labels=5)).eval(), make_tokenizer(), "token_classifier"
    )
    student, _ = build_student(teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY)))
    assert isinstance(student.hf, PQRNNForTokenClassification)
    inputs = student.tokenize(["the cat sees a dog .", "a bird ."])
    views = student(inputs, frozenset({"logits", "hidden_states"}))
    assert views.logits.shape == (*inputs["input_ids"].shape, 5)
    assert len(views.hidden_states) == 3
    labels = torch.full(inputs["input_ids"].shape, -100)
    labels[:, 1] = 3
    assert student.hf(**inputs, labels=labels).loss.item() > 0


def test_embedding_student_pools_its_last_layer(embedding_teacher_dir):
    teacher = load_model(str(embedding_teacher_dir))
    student, _ = build_student(teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY)))
    embeddings = student.encode(["the cat sees a dog .", "a bird ."])
    assert embeddings.shape == (2, 32) and torch.allclose(embeddings.norm(dim=-1), torch.ones(2))  # normalized


def test_language_model_teachers_and_vocabulary_compression_are_refused(classifier_teacher):
    from transformers import BertForMaskedLM

    mlm = TextModel(BertForMaskedLM(bert_config()).eval(), make_tokenizer(), "masked_lm")
    with pytest.raises(ModelError, match="student.pqrnn: .* the teacher is a masked_lm model"):
        build_student(mlm, StudentSpec(pqrnn=PQRNNSpec(**TINY)))
    with pytest.raises(ModelError, match="no embedding table"):
        build_student(classifier_teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY), vocabulary={"keep": 0.5}))


def test_compared_pair_pools_each_text_apart_by_hand():
    from kdforge.models.pooling import compared_pair

    class Uniform(nn.Module):  # equal scores: attention pooling is the mean of a segment
        def forward(self, x):
            return torch.zeros(*x.shape[:-1], 1)

    tokens = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [5.0, 0.0], [9.0, 9.0]], [[2.0, 2.0], [4.0, 0.0], [7.0, 7.0], [7.0, 7.0]]]
    )
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # the 9s and 7s are padding
    segments = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])  # row 0: a pair; row 1: one text
    out = compared_pair(tokens, mask, segments, Uniform())
    u, v = torch.tensor([2.0, 3.0]), torch.tensor([5.0, 0.0])
    assert torch.allclose(out[0], torch.cat([u, v, (u - v).abs(), u * v]))
    w = torch.tensor([3.0, 1.0])  # a single text is compared with itself
    assert torch.allclose(out[1], torch.cat([w, w, torch.zeros(2), w * w]))
    assert torch.equal(compared_pair(tokens, mask, None, Uniform())[1], out[1])


def test_aligned_pair_finds_each_token_in_the_other_text_by_hand():
    from kdforge.models.pooling import aligned_pair, compared_pair

    class Uniform(nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape[:-1], 1)

    # row 0: premise [10, 0] [0, 10], hypothesis [10, 0], then padding; row 1: one text
    tokens = torch.tensor(
        [[[10.0, 0.0], [0.0, 10.0], [10.0, 0.0], [5.0, 5.0]], [[1.0, 0.0], [0.0, 2.0], [4.0, 4.0], [4.0, 4.0]]]
    )
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    segments = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])
    out = aligned_pair(tokens, mask, segments, Uniform())
    assert out.shape == (2, 16)
    assert torch.equal(out[:, :8], compared_pair(tokens, mask, segments, Uniform()))
    # The hypothesis token's dot products with the premise are 100 and 0: it aligns with [10, 0], its
    # twin, so nothing is missing (|x - x~| = 0). Both premise tokens align with the one hypothesis token:
    # [10, 0] finds itself, [0, 10] is missing by [10, 10]. The padding [5, 5] is never aligned with.
    premise_gap, premise_product = torch.tensor([5.0, 5.0]), torch.tensor([50.0, 0.0])
    hypothesis_gap, hypothesis_product = torch.zeros(2), torch.tensor([100.0, 0.0])
    found = torch.cat([premise_gap, premise_product, hypothesis_gap, hypothesis_product])
    torch.testing.assert_close(out[0, 8:], found)
    # One text aligns with itself: [1, 0] with softmax(1, 0), [0, 2] with softmax(0, 4), over both tokens.
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    aligned_a = torch.softmax(torch.tensor([1.0, 0.0]), 0) @ torch.stack([a, b])
    aligned_b = torch.softmax(torch.tensor([0.0, 4.0]), 0) @ torch.stack([a, b])
    gap = ((a - aligned_a).abs() + (b - aligned_b).abs()) / 2
    product = (a * aligned_a + b * aligned_b) / 2
    torch.testing.assert_close(out[1, 8:], torch.cat([gap, product, gap, product]))


def overlap_pairs(rows: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Token ids of [CLS] premise [SEP] hypothesis [SEP], 6 premise words and 2 hypothesis words out of
    ~2,000; the label: every hypothesis word is in the premise (half the rows copy them from it)."""
    premise = torch.randint(10, 2000, (rows, 6), generator=generator)
    copied = premise.gather(1, torch.randint(0, 6, (rows, 2), generator=generator))
    fresh = torch.randint(10, 2000, (rows, 2), generator=generator)
    hypothesis = torch.where(torch.rand(rows, 1, generator=generator) < 0.5, copied, fresh)
    labels = torch.tensor([int(set(h) <= set(p)) for p, h in zip(premise.tolist(), hypothesis.tolist(), strict=True)])
    cls, sep = torch.full((rows, 1), 2), torch.full((rows, 1), 3)
    ids = torch.cat([cls, premise, sep, hypothesis, sep], dim=1)
    segments = torch.zeros_like(ids)
    segments[:, 8:] = 1
    return ids, segments, labels


def overlap_accuracy(compare_pairs: bool | str, exact_match: bool = False) -> float:
    """Test accuracy of a tiny pQRNN trained for 600 steps on ``overlap_pairs``."""
    generator = torch.Generator().manual_seed(0)
    train, test = overlap_pairs(2048, generator), overlap_pairs(512, generator)
    torch.manual_seed(0)
    config = PQRNNConfig(
        projection_features=64,
        state_size=16,
        num_labels=2,
        compare_pairs=compare_pairs,
        exact_match=exact_match,
        dropout=0.0,
    )
    model = PQRNNForSequenceClassification(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        rows = torch.randint(0, 2048, (64,))
        ids, segments, labels = (t[rows] for t in train)
        loss = model(ids, torch.ones_like(ids), segments, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = model.eval()(test[0], torch.ones_like(test[0]), test[1]).logits.argmax(-1)
    return (predicted == test[2]).float().mean().item()


def test_an_aligned_pqrnn_learns_word_overlap_that_pooling_apart_misses():
    """Whether a hypothesis's words are all in its premise, the signal a tiny entailment model lives on:
    a pQRNN that pools the two texts apart keeps no trace of which words they share; aligned, it
    finds some of it; told which tokens the other text holds (``exact_match``), nearly all."""
    apart, aligned, flagged = overlap_accuracy(True), overlap_accuracy("aligned"), overlap_accuracy(True, True)
    assert aligned >= 0.72 and aligned >= apart + 0.05, (apart, aligned)
    assert flagged >= 0.95, flagged


def test_exact_match_flags_by_hand():
    from kdforge.models.overlap import exact_match_flags

    ids = torch.tensor([[2, 7, 8, 3, 8, 9, 3, 0], [2, 7, 8, 3, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0, 0]])
    segments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    flags = exact_match_flags(ids, mask, segments).squeeze(-1)
    # row 0: 8 and [SEP] (3) are in both texts, 7 and 9 in one, [CLS] (2) only in the first; padding is 0
    assert flags[0].tolist() == [0, 0, 1, 1, 1, 0, 1, 0]
    assert not flags[1].any() and not exact_match_flags(ids, mask, None).any()  # one text: nothing to match


def test_overlap_shares_by_hand():
    from kdforge.models.overlap import overlap_shares

    ids = torch.tensor([[2, 7, 8, 3, 8, 9, 3, 0], [2, 7, 8, 3, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0, 0]])
    segments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    # row 0: the first text [CLS] 7 8 [SEP] has 8 and [SEP] in the second (2 of 4); the second 8 9 [SEP] has
    # 8 and [SEP] in the first (2 of 3; padding is not a token); row 1 has no second text
    torch.testing.assert_close(overlap_shares(ids, mask, segments), torch.tensor([[2 / 4, 2 / 3], [0.0, 0.0]]))


def test_a_word_overlap_student_hands_its_classifier_the_shares(classifier_teacher, tmp_path):
    spec = StudentSpec(pqrnn=PQRNNSpec(**TINY, compare_pairs=True, word_overlap=True))
    student, _ = build_student(classifier_teacher, spec)
    assert student.hf.classifier.in_features == 4 * 32 + 2
    assert student.num_parameters() == parameter_count(64, 32, 16, 2, 2, 2, compare_pairs=True, word_overlap=True)
    assert student.num_parameters() - parameter_count(64, 32, 16, 2, 2, 2, compare_pairs=True) == 2 * 2
    seen = []
    student.hf.classifier.register_forward_hook(lambda module, args, out: seen.append(args[0][:, -2:]))
    first, second = ["the cat sees a dog ."], ["a dog ."]
    student.predict(first, second)
    tokens = student.tokenizer.convert_ids_to_tokens(student.tokenize(first, second)["input_ids"][0].tolist())
    # [CLS] the cat sees a dog . [SEP] | a dog . [SEP]: "a", "dog", "." and [SEP] are in both texts
    assert len(tokens) == 12
    torch.testing.assert_close(seen[0][0], torch.tensor([4 / 8, 4 / 4]))
    from kdforge.export import save_hf

    save_hf(student, tmp_path / "overlap")
    loaded = load_model(str(tmp_path / "overlap"))
    assert loaded.hf.config.word_overlap
    torch.testing.assert_close(loaded.predict(first, second), student.predict(first, second))


def test_an_aligned_student_builds_saves_and_loads(classifier_teacher, tmp_path):
    spec = StudentSpec.model_validate({"pqrnn": {**TINY, "compare_pairs": "aligned"}})
    student, _ = build_student(classifier_teacher, spec)
    assert student.hf.classifier.in_features == 8 * 32
    assert student.num_parameters() == parameter_count(64, 32, 16, 2, 2, 2, compare_pairs="aligned")
    from kdforge.export import save_hf

    save_hf(student, tmp_path / "aligned")
    loaded = load_model(str(tmp_path / "aligned"))
    assert loaded.hf.config.compare_pairs == "aligned"
    first, second = ["the cat sees a dog .", "a bird ."], ["a dog .", "the cat ."]
    torch.testing.assert_close(loaded.predict(first, second), student.predict(first, second))
    with pytest.raises(ValidationError, match="compare_pairs"):
        StudentSpec.model_validate({"pqrnn": {"compare_pairs": "align"}})

    flagged, _ = build_student(classifier_teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY, exact_match=True)))
    assert flagged.num_parameters() == parameter_count(64, 32, 16, 2, 2, 2, exact_match=True)
    assert flagged.num_parameters() - parameter_count(64, 32, 16, 2, 2, 2) == 32  # one more bottleneck column
    seen = []
    flagged.hf.pqrnn.bottleneck.register_forward_hook(lambda module, args, out: seen.append(args[0][..., -1]))
    flagged.predict(["the cat sees a dog ."], ["a dog ."])
    ids = flagged.tokenize(["the cat sees a dog ."], ["a dog ."])["input_ids"][0].tolist()
    tokens = flagged.tokenizer.convert_ids_to_tokens(ids)
    marked = {token for token, flag in zip(tokens, seen[0][0].tolist(), strict=True) if flag}
    assert {"a", "dog", "."} <= marked and not marked & {"the", "cat", "sees"}


def test_a_pair_comparing_student_sees_which_text_a_word_is_in(classifier_teacher):
    spec = StudentSpec(pqrnn=PQRNNSpec(**TINY, compare_pairs=True))
    student, _ = build_student(classifier_teacher, spec)
    assert student.hf.classifier.in_features == 4 * 32
    assert student.num_parameters() == parameter_count(64, 32, 16, 2, 2, 2, compare_pairs=True)
    joined, _ = build_student(classifier_teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY)))
    assert student.num_parameters() - joined.num_parameters() == 3 * 32 * 2  # only the head grows
    seen = []
    student.hf.classifier.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    student.predict(["the cat sees a dog ."], ["a bird ."])
    student.predict(["the cat sees a dog ."])
    (pair,), (single,) = seen
    u, v, gap, product = pair.split(32, dim=-1)  # token_type_ids reach the model: two texts, two vectors
    assert not torch.allclose(u, v) and torch.allclose(gap, (u - v).abs()) and torch.allclose(product, u * v)
    u, v, gap, _ = single.split(32, dim=-1)
    assert torch.equal(u, v) and not gap.any()
    with pytest.raises(ModelError, match="only a sentence\\(-pair\\) classifier compares pairs"):
        from transformers import BertForTokenClassification

        tagger = TextModel(
            BertForTokenClassification(bert_config(num_labels=3)).eval(), make_tokenizer(), "token_classifier"
        )
        build_student(tagger, spec)


# ----- in the pipeline ----------------------------------------------------------------------------


def pqrnn_recipe(teacher, data, methods, **training) -> dict:
    recipe = classification_recipe(teacher, data, methods, **training)
    recipe["student"] = {"pqrnn": TINY}
    return recipe


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("attention", "reads attention maps, but the student has no attention"),
        ("minilm", "reads attention maps, but the student has no attention"),
        ("theseus", "theseus swaps teacher blocks into the student, so it needs a transformer student"),
    ],
)
def test_attention_methods_are_refused_before_training(classifier_teacher_dir, data_dir, tmp_path, method, message):
    recipe = pqrnn_recipe(classifier_teacher_dir, data_dir, [{"name": "kd"}, {"name": method}])
    with pytest.raises(IncompatibleError, match=rf"methods\[1\] \({method}\): {message}"):
        kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert not (tmp_path / "stages" / "distill" / "checkpoints").exists()


def test_kd_moves_the_pqrnn_student_towards_the_teacher(classifier_teacher, classifier_teacher_dir, data_dir, tmp_path):
    def gap(student) -> float:
        t = torch.log_softmax(classifier_teacher.predict(texts), -1)
        s = torch.log_softmax(student.predict(texts), -1)
        return float((t.exp() * (t - s)).sum(-1).mean())

    texts = sentences(48, seed=1)
    before = gap(build_student(classifier_teacher, StudentSpec(pqrnn=PQRNNSpec(**TINY)))[0])
    recipe = pqrnn_recipe(classifier_teacher_dir, data_dir, [{"name": "kd", "temperature": 2.0}], max_steps=60, lr=3e-3)
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    student = load_model(str(tmp_path / "student"))
    assert isinstance(student.hf, PQRNNForSequenceClassification)
    assert gap(student) < 0.5 * before, (before, gap(student))
    assert results["agreement"]["prediction_agreement"] >= 50
