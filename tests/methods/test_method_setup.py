"""Method classes: the registry, argument parsing, pair checks, projections and forward wiring."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from kdforge.errors import IncompatibleError
from kdforge.methods import METHODS, Batch, ModelShape, Pair
from kdforge.methods.attention import Attention, attention_mse_loss
from kdforge.methods.ce import CE
from kdforge.methods.cosine import Cosine
from kdforge.methods.embedding_mse import EmbeddingMSE
from kdforge.methods.hidden_mse import HiddenMSE
from kdforge.methods.kd import KD
from kdforge.methods.layer_map import uniform_map
from kdforge.methods.projection import width_projection
from kdforge.models.views import ALL_VIEWS, Views

EXPECTED_METHODS = ["attention", "ce", "cosine", "embedding_mse", "hidden_mse", "kd"]


def shape(kind="embedding", layers=4, hidden=32, heads=4, labels=None, embedding=None) -> ModelShape:
    return ModelShape(
        kind=kind,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_labels=labels,
        embedding_size=hidden if embedding is None else embedding,
    )


def pair(teacher=None, student=None, same_tokenizer=True, **student_kw) -> Pair:
    return Pair(teacher=teacher, student=student or shape(**student_kw), same_tokenizer=same_tokenizer)


def make(cls, **raw):
    return cls(cls.parse_args(raw))


def batch(labels=None) -> Batch:
    return Batch(student_inputs={}, teacher_inputs=[], index=torch.arange(2), labels=labels)


# ---------------------------------------------------------------- registry and documentation


def test_registry_maps_names_to_their_classes():
    classes = {
        "kd": KD,
        "ce": CE,
        "hidden_mse": HiddenMSE,
        "attention": Attention,
        "embedding_mse": EmbeddingMSE,
        "cosine": Cosine,
    }
    assert set(EXPECTED_METHODS) <= set(METHODS.names())
    assert [name for name, _ in METHODS] == sorted(METHODS.names())
    for name, cls in classes.items():
        assert METHODS.get(name) is cls and cls.registered_name == name


def test_every_method_file_registers_a_method():
    import pkgutil

    import kdforge.methods as package
    from kdforge.methods import _INFRASTRUCTURE

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - _INFRASTRUCTURE
    registered = {cls.__module__.rsplit(".", 1)[-1] for _, cls in METHODS}
    assert modules == registered


@pytest.mark.parametrize("name", METHODS.names())
def test_each_method_cites_its_paper_and_an_equation_or_section(name):
    cls = METHODS.get(name)
    assert re.fullmatch(r"(arXiv:\d{4}\.\d{4,5}|[A-Z]+:[\w.-]+)", cls.paper), cls.paper
    doc = cls.__doc__ or ""
    assert re.search(r"\b(Eq\.|Sec\.|Section|Equation)\s*\d", doc), doc
    assert cls.paper.split(":", 1)[1] in doc  # the docstring names the same paper
    assert cls.summary.strip()


@pytest.mark.parametrize("name", EXPECTED_METHODS)
def test_declared_views_are_known_views(name):
    method = METHODS.get(name)()
    assert method.student_needs() and method.student_needs() <= ALL_VIEWS
    assert method.teacher_needs() <= ALL_VIEWS


def test_views_each_method_declares():
    assert KD().student_needs() == KD().teacher_needs() == {"logits"}
    assert CE().student_needs() == {"logits"} and CE().teacher_needs() == frozenset()
    assert HiddenMSE().teacher_needs() == {"hidden_states"}
    assert EmbeddingMSE().teacher_needs() == {"embedding"}
    assert make(Attention).teacher_needs() == {"qkv"}
    assert make(Attention, scores="probs").teacher_needs() == {"attentions"}
    assert make(Cosine).teacher_needs() == {"hidden_states"} and make(Cosine).token_level
    assert make(Cosine, on="embedding").teacher_needs() == {"embedding"}
    assert not make(Cosine, on="embedding").token_level
    assert HiddenMSE.token_level and Attention.token_level and not KD.token_level
    assert CE.needs_labels and not CE.needs_teacher


# ---------------------------------------------------------------- parse_args


def test_parse_args_accepts_and_coerces_valid_arguments():
    assert KD.parse_args({"temperature": 2}).temperature == 2.0
    assert KD.parse_args({}).temperature == 1.0
    args = HiddenMSE.parse_args({"layer_map": [[0, 0], [12, 4]], "include_embeddings": True})
    assert args.layer_map == [(0, 0), (12, 4)]
    assert Attention.parse_args({"scores": "probs"}).scores == "probs"
    assert Cosine.parse_args({"on": "embedding"}).on == "embedding"


@pytest.mark.parametrize("name", EXPECTED_METHODS)
def test_parse_args_rejects_unknown_arguments_naming_method_and_argument(name):
    cls = METHODS.get(name)
    with pytest.raises(ValueError) as info:
        cls.parse_args({"temprature": 2})
    message = str(info.value)
    assert f"method {name!r}" in message
    assert "'temprature'" in message
    assert "valid: name, weight" in message
    for field in cls.Args.model_fields:
        assert field in message


def test_parse_args_unknown_argument_lists_the_valid_ones():
    valid = "name, weight, temperature, positions, view"
    with pytest.raises(ValueError, match=rf"method 'kd' has no argument 'temp'; valid: {valid}$"):
        KD.parse_args({"temp": 2.0})


@pytest.mark.parametrize(
    ("cls", "raw", "argument"),
    [
        (KD, {"temperature": "hot"}, "temperature"),
        (KD, {"temperature": 0}, "temperature"),
        (KD, {"temperature": -1.5}, "temperature"),
        (CE, {"label_smoothing": "a bit"}, "label_smoothing"),
        (HiddenMSE, {"layer_map": "12->4"}, "layer_map"),
        (HiddenMSE, {"layer_map": [[12, 4, 1]]}, "layer_map"),
        (HiddenMSE, {"layer_map": []}, "layer_map"),
        (HiddenMSE, {"include_embeddings": "sometimes"}, "include_embeddings"),
        (Attention, {"scores": "softmax"}, "scores"),
        (Attention, {"layer_map": [["a", 1]]}, "layer_map"),
        (Cosine, {"on": "tokens"}, "on"),
    ],
)
def test_parse_args_rejects_wrong_types_and_values(cls, raw, argument):
    with pytest.raises(ValueError) as info:
        cls.parse_args(raw)
    message = str(info.value)
    assert message.startswith(f"method {cls.registered_name!r}, {argument}"), message


def test_parse_args_empty_layer_map_says_so():
    with pytest.raises(ValueError, match="layer_map is empty"):
        HiddenMSE.parse_args({"layer_map": []})


@pytest.mark.parametrize("value", [1.5, -0.5])
def test_parse_args_rejects_label_smoothing_outside_0_1(value):
    with pytest.raises(ValueError, match=r"method 'ce', label_smoothing"):
        CE.parse_args({"label_smoothing": value})


# ---------------------------------------------------------------- setup: impossible pairs


def test_kd_rejects_an_embedding_student():
    method = make(KD)
    with pytest.raises(IncompatibleError, match="kd needs prediction logits of the same kind"):
        method.setup(pair(shape("classifier", labels=2), kind="embedding"))


def test_kd_rejects_missing_teacher_and_embedding_teacher():
    with pytest.raises(IncompatibleError, match="kd"):
        make(KD).setup(pair(None, kind="classifier", labels=2))
    with pytest.raises(IncompatibleError, match="kd"):
        make(KD).setup(pair(shape("embedding"), kind="classifier", labels=2))


def test_kd_rejects_different_label_counts_naming_both():
    with pytest.raises(IncompatibleError) as info:
        make(KD).setup(pair(shape("classifier", labels=3), kind="classifier", labels=2))
    assert "3 labels" in str(info.value) and "student 2" in str(info.value)


def test_kd_accepts_matching_classifiers_across_tokenizers():
    method = make(KD)
    method.setup(pair(shape("classifier", labels=2), kind="classifier", labels=2, same_tokenizer=False))
    # per-sample class logits need no token alignment: the loss is computed, and zero for equal logits
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    batch = Batch({"attention_mask": torch.ones(2, 3)}, [{"attention_mask": torch.ones(2, 4)}], torch.arange(2))
    same = method(Views(torch.ones(2, 4), logits=logits), Views(torch.ones(2, 3), logits=logits.clone()), batch)
    other = method(Views(torch.ones(2, 4), logits=logits), Views(torch.ones(2, 3), logits=-logits), batch)
    assert same.item() == pytest.approx(0.0, abs=1e-7) and other.item() > 0.1


def test_ce_needs_a_classifier_student_but_no_teacher():
    make(CE).setup(pair(None, kind="classifier", labels=2))
    with pytest.raises(IncompatibleError, match="ce needs a classifier student"):
        make(CE).setup(pair(None, kind="embedding"))


def test_attention_rejects_different_head_counts_naming_both():
    with pytest.raises(IncompatibleError) as info:
        make(Attention).setup(pair(shape(heads=12, hidden=48), heads=4, hidden=48))
    message = str(info.value)
    assert "teacher has 12 heads" in message
    assert "student 4" in message


def test_attention_rejects_different_tokenizers_and_missing_teacher():
    with pytest.raises(IncompatibleError, match="tokenize differently"):
        make(Attention).setup(pair(shape(), same_tokenizer=False))
    with pytest.raises(IncompatibleError, match="needs a teacher"):
        make(Attention).setup(pair(None))


def test_attention_rejects_the_embedding_layer_and_out_of_range_layers():
    with pytest.raises(IncompatibleError, match="layer 0 is the embedding layer"):
        make(Attention, layer_map=[[0, 0], [4, 2]]).setup(pair(shape(layers=4), layers=2))
    with pytest.raises(IncompatibleError, match="teacher layer 5"):
        make(Attention, layer_map=[[5, 2]]).setup(pair(shape(layers=4), layers=2))


def test_attention_defaults_to_the_uniform_map():
    method = make(Attention)
    method.setup(pair(shape(layers=12), layers=4))
    assert method.layer_map == [(3, 1), (6, 2), (9, 3), (12, 4)]
    assert list(method.parameters()) == []


def test_hidden_mse_rejects_different_tokenizers_and_missing_teacher():
    with pytest.raises(IncompatibleError, match="hidden_mse compares token positions"):
        make(HiddenMSE).setup(pair(shape(), same_tokenizer=False))
    with pytest.raises(IncompatibleError, match="hidden_mse needs a teacher"):
        make(HiddenMSE).setup(pair(None))


def test_hidden_mse_layer_maps():
    method = make(HiddenMSE, include_embeddings=True)
    method.setup(pair(shape(layers=12), layers=4))
    assert method.layer_map == uniform_map(12, 4, include_embeddings=True)
    method = make(HiddenMSE, layer_map=[[0, 0], [12, 4]])
    method.setup(pair(shape(layers=12), layers=4))
    assert method.layer_map == [(0, 0), (12, 4)]
    with pytest.raises(IncompatibleError, match="hidden_mse: layer_map uses student layer 5"):
        make(HiddenMSE, layer_map=[[12, 5]]).setup(pair(shape(layers=12), layers=4))


def test_cosine_checks_tokenizers_only_on_hidden_states():
    with pytest.raises(IncompatibleError, match="tokenize alike"):
        make(Cosine).setup(pair(shape(), same_tokenizer=False))
    make(Cosine, on="embedding").setup(pair(shape(), same_tokenizer=False))
    with pytest.raises(IncompatibleError, match="cosine needs a teacher"):
        make(Cosine).setup(pair(None))


def test_embedding_mse_needs_a_teacher_but_not_the_same_tokenizer():
    make(EmbeddingMSE).setup(pair(shape(), same_tokenizer=False))
    with pytest.raises(IncompatibleError, match="embedding_mse needs a teacher"):
        make(EmbeddingMSE).setup(pair(None))


# ---------------------------------------------------------------- projections


def test_width_projection_identity_or_student_to_teacher_linear():
    assert isinstance(width_projection(32, 32), nn.Identity)
    proj = width_projection(16, 48)
    assert isinstance(proj, nn.Linear)
    assert (proj.in_features, proj.out_features) == (16, 48)
    assert proj.weight.requires_grad
    assert proj(torch.zeros(2, 5, 16)).shape == (2, 5, 48)


@pytest.mark.parametrize(
    ("cls", "raw", "teacher", "student", "width_field"),
    [
        (HiddenMSE, {}, shape(hidden=48), shape(hidden=16), "hidden"),
        (Cosine, {}, shape(hidden=48), shape(hidden=16), "hidden"),
        (Cosine, {"on": "embedding"}, shape(embedding=48), shape(embedding=16), "embedding"),
        (EmbeddingMSE, {}, shape(embedding=48), shape(embedding=16), "embedding"),
    ],
)
def test_methods_learn_a_projection_only_when_widths_differ(cls, raw, teacher, student, width_field):
    method = make(cls, **raw)
    method.setup(Pair(teacher=teacher, student=student, same_tokenizer=True))
    assert isinstance(method.proj, nn.Linear)
    assert (method.proj.in_features, method.proj.out_features) == (16, 48)
    params = [p for p in method.parameters() if p.requires_grad]
    assert [tuple(p.shape) for p in params] == [(48, 16)]

    same = make(cls, **raw)
    same.setup(Pair(teacher=teacher, student=teacher, same_tokenizer=True))
    assert isinstance(same.proj, nn.Identity)
    assert list(same.parameters()) == []


def test_projections_follow_the_width_the_method_compares():
    # Hidden widths match but sentence-embedding widths differ (e.g. a projecting pooler).
    teacher, student = shape(hidden=32, embedding=64), shape(hidden=32, embedding=16)
    hidden = make(Cosine)
    hidden.setup(Pair(teacher, student, True))
    assert isinstance(hidden.proj, nn.Identity)
    on_embedding = make(Cosine, on="embedding")
    on_embedding.setup(Pair(teacher, student, True))
    assert (on_embedding.proj.in_features, on_embedding.proj.out_features) == (16, 64)
    embedding = make(EmbeddingMSE)
    embedding.setup(Pair(teacher, student, True))
    assert (embedding.proj.in_features, embedding.proj.out_features) == (16, 64)
    hidden_mse = make(HiddenMSE)
    hidden_mse.setup(Pair(teacher, student, True))
    assert isinstance(hidden_mse.proj, nn.Identity)


# ---------------------------------------------------------------- forward wiring


def constant_layers(values, shape_):
    return tuple(torch.full(shape_, float(v)) for v in values)


def test_hidden_mse_forward_compares_teacher_layer_t_with_student_layer_s():
    mask = torch.tensor([[1, 1, 0]])
    method = make(HiddenMSE, layer_map=[[4, 1], [2, 2], [0, 0]])
    method.setup(pair(shape(layers=4), layers=2))
    # hidden_states[i] == i everywhere (padding included) for both models, except padding is huge.
    ht = constant_layers(range(5), (1, 3, 8))
    hs = constant_layers(range(3), (1, 3, 8))
    for h in ht:
        h[:, 2] = 1e6
    loss = method(Views(mask, hidden_states=ht), Views(mask, hidden_states=hs), batch())
    # (4 - 1)^2 + (2 - 2)^2 + (0 - 0)^2
    assert loss.item() == pytest.approx(9.0)


def test_hidden_mse_forward_trains_the_projection():
    mask = torch.ones(2, 3)
    method = make(HiddenMSE)
    method.setup(pair(shape(layers=2, hidden=8), layers=1, hidden=4))
    g = torch.Generator().manual_seed(0)
    ht = tuple(torch.randn(2, 3, 8, generator=g) for _ in range(3))
    hs = tuple(torch.randn(2, 3, 4, generator=g) for _ in range(2))
    loss = method(Views(mask, hidden_states=ht), Views(mask, hidden_states=hs), batch())
    loss.backward()
    assert method.proj.weight.grad is not None and method.proj.weight.grad.abs().sum() > 0
    expected = ((hs[1] @ method.proj.weight.detach().T - ht[2]) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_attention_forward_on_probabilities_uses_block_numbering():
    mask = torch.tensor([[1, 1]])
    method = make(Attention, scores="probs", layer_map=[[3, 1], [1, 2]])
    method.setup(pair(shape(layers=3, heads=2), layers=2, heads=2))
    # attentions[i - 1] belongs to block i and holds the value i.
    at = constant_layers([1, 2, 3], (1, 2, 2, 2))
    ast = constant_layers([1, 2], (1, 2, 2, 2))
    loss = method(Views(mask, attentions=at), Views(mask, attentions=ast), batch())
    # student block 1 vs teacher block 3: (1 - 3)^2; student block 2 vs teacher block 1: (2 - 1)^2
    assert loss.item() == pytest.approx(4.0 + 1.0)


def test_attention_forward_on_logits_uses_q_k_scores():
    mask = torch.tensor([[1, 1, 1, 0]])
    g = torch.Generator().manual_seed(0)
    method = make(Attention)
    method.setup(pair(shape(layers=2, heads=2), layers=1, heads=2))
    assert method.layer_map == [(2, 1)]
    tq = tuple(torch.randn(1, 2, 4, 8, generator=g) for _ in range(2))
    tk = tuple(torch.randn(1, 2, 4, 8, generator=g) for _ in range(2))
    sq, sk = (torch.randn(1, 2, 4, 8, generator=g),), (torch.randn(1, 2, 4, 8, generator=g),)
    loss = method(Views(mask, queries=tq, keys=tk), Views(mask, queries=sq, keys=sk), batch())
    expected = attention_mse_loss(
        [sq[0] @ sk[0].transpose(-1, -2) / 8**0.5], [tq[1] @ tk[1].transpose(-1, -2) / 8**0.5], mask
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    same = method(Views(mask, queries=tq, keys=tk), Views(mask, queries=tq[1:], keys=tk[1:]), batch())
    assert same.item() == 0.0


def test_cosine_forward_uses_the_last_hidden_state_and_the_mask():
    mask = torch.tensor([[1, 0]])
    method = make(Cosine)
    method.setup(pair(shape(hidden=2), hidden=2))
    first = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    ht = (first, torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]]))  # last layer: real token opposite
    hs = (first, first.clone())
    loss = method(Views(mask, hidden_states=ht), Views(mask, hidden_states=hs), batch())
    assert loss.item() == pytest.approx(2.0)


def test_embedding_methods_forward():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 4.0]])
    mask = torch.ones(2, 1)
    mse = make(EmbeddingMSE)
    mse.setup(pair(shape(hidden=2), hidden=2))
    assert mse(Views(mask, embedding=t), Views(mask, embedding=s), batch()).item() == pytest.approx((1 + 1 + 0 + 4) / 4)
    cos = make(Cosine, on="embedding")
    cos.setup(pair(shape(hidden=2), hidden=2))
    assert cos(Views(mask, embedding=t), Views(mask, embedding=s), batch()).item() == pytest.approx(0.5)


def test_kd_forward_uses_its_temperature():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 1.0, 0.0]])
    mask = torch.ones(1, 1)
    losses = []
    for temperature in (1.0, 4.0):
        method = make(KD, temperature=temperature)
        method.setup(pair(shape("classifier", labels=3), kind="classifier", labels=3))
        losses.append(method(Views(mask, logits=t), Views(mask, logits=s), batch()).item())
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_ce_forward_needs_labels():
    method = make(CE)
    mask = torch.ones(2, 1)
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    with pytest.raises(IncompatibleError, match="ce needs labels"):
        method(None, Views(mask, logits=logits), batch())
    loss = method(None, Views(mask, logits=logits), batch(labels=torch.tensor([1, 0])))
    expected = (math.log(2) + -math.log(math.exp(1) / (math.exp(1) + math.exp(-1)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_missing_view_names_the_method_and_view():
    method = make(HiddenMSE)
    method.setup(pair(shape()))
    with pytest.raises(RuntimeError, match=r"hidden_mse needs the 'hidden_states' view"):
        method(Views(torch.ones(1, 1)), Views(torch.ones(1, 1)), batch())
