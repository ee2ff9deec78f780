"""GLMD vocabulary compression: which tokens a student keeps, the id map, and a standalone export."""

from __future__ import annotations

import pytest
import torch

from kdforge.engine.collate import Collator, aligned
from kdforge.engine.pipeline import shape
from kdforge.engine.teacher_source import TeacherSource
from kdforge.errors import ModelError, RecipeError
from kdforge.export import export
from kdforge.models import build_student, load_model
from kdforge.models.vocabulary import (
    choose_kept,
    reduced_tokenizer,
    token_counts,
    vocabulary_map,
)
from kdforge.recipe import StudentSpec, TaskSpec, validate_recipe
from kdforge.tasks import TASKS
from tests.conftest import make_tokenizer, sentences
from tests.language_models import masked_lm_folder

TEXTS = sentences(120, seed=0)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return load_model(str(masked_lm_folder(tmp_path_factory.mktemp("mlm") / "teacher")))


@pytest.fixture(scope="module")
def compressed(teacher):
    """The teacher itself (every block copied) with half of its vocabulary."""
    student, report = build_student(teacher, StudentSpec(layers=[0, 1, 2, 3], vocabulary={"keep": 0.5}), TEXTS)
    return student, report


def ids_of(tokenizer, words: list[str]) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[w] for w in words]


# ---------------------------------------------------------------- which tokens are kept


def test_special_tokens_then_the_most_frequent_are_kept():
    counts = torch.tensor([0, 0, 0, 9, 1, 7, 7, 0, 3, 5])  # ids 0-2 are special, never counted
    # K = 0.6 * 10 = 6: the 3 special ids, then 3 (9), 5 (7), 6 (7, tie broken by the lower id)
    assert choose_kept(counts, [0, 1, 2], keep=0.6) == [0, 1, 2, 3, 5, 6]
    # rounded up to a multiple of 4: K = 8 adds 9 (5) and 8 (3)
    assert choose_kept(counts, [0, 1, 2], keep=0.6, multiple_of=4) == [0, 1, 2, 3, 5, 6, 8, 9]
    assert choose_kept(counts, [0, 1, 2], keep=1.0) == list(range(10))
    with pytest.raises(ModelError, match="fewer than the 3 special tokens"):
        choose_kept(counts, [0, 1, 2], keep=0.2)


def test_token_counts_count_the_training_text():
    tokenizer = make_tokenizer()
    counts = token_counts(tokenizer, ["the cat sees the dog .", "the bird ."], batch_size=1)
    the, cat, bird, dog, sees, dot = ids_of(tokenizer, ["the", "cat", "bird", "dog", "sees", "."])
    assert counts[the] == 3 and counts[dot] == 2 and counts[cat] == counts[bird] == counts[dog] == counts[sees] == 1
    assert counts.sum() == 9 and counts[tokenizer.cls_token_id] == 0  # no special tokens added


def test_kept_set_of_a_built_student(teacher, compressed):
    student, report = compressed
    tokenizer = teacher.tokenizer
    counts = token_counts(tokenizer, TEXTS)
    kept = vocabulary_map(tokenizer, student.tokenizer).kept.tolist()
    assert report.vocabulary == (26, 52) and len(kept) == 26 and kept == sorted(kept)
    assert set(tokenizer.all_special_ids) <= set(kept)
    dropped = [i for i in range(52) if i not in kept]
    frequent = [i for i in kept if i not in tokenizer.all_special_ids]
    assert min(counts[frequent]) >= max(counts[dropped])  # nothing dropped is more frequent than a kept token


# ---------------------------------------------------------------- the id map


def test_map_sends_dropped_ids_to_unk_and_restricts_teacher_logits(teacher, compressed):
    student, _ = compressed
    vocab = vocabulary_map(teacher.tokenizer, student.tokenizer)
    kept = vocab.kept.tolist()
    dropped = next(i for i in range(52) if i not in kept)
    ids = torch.tensor([[kept[5], dropped, -100, kept[0]]])
    assert vocab.student_ids(ids).tolist() == [[5, student.tokenizer.unk_token_id, -100, 0]]
    logits = torch.arange(2 * 52, dtype=torch.float).view(1, 2, 52)
    restricted = vocab.teacher_logits(logits)
    assert restricted.shape == (1, 2, 26)
    assert restricted[0, 1].tolist() == [52.0 + i for i in kept]  # the kept ids, in student order


def test_no_map_between_equal_or_unrelated_vocabularies(teacher):
    assert vocabulary_map(teacher.tokenizer, make_tokenizer()) is None
    from transformers import BertTokenizer

    other = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra"])})
    assert vocabulary_map(teacher.tokenizer, other) is None  # 'zebra' is not one of the teacher's tokens


def test_compressed_student_is_its_teacher_on_kept_tokens(teacher, compressed):
    """All blocks copied: on text of kept tokens, student logits are the teacher's restricted logits."""
    student, _ = compressed
    vocab = vocabulary_map(teacher.tokenizer, student.tokenizer)
    text = ["the cat likes the ball ."]
    inputs = teacher.tokenize(text)
    assert (vocab.student_ids(inputs["input_ids"]) != student.tokenizer.unk_token_id).all()
    with torch.no_grad():
        t = teacher(inputs, frozenset({"logits"})).logits
        s = student({**inputs, "input_ids": vocab.student_ids(inputs["input_ids"])}, frozenset({"logits"})).logits
    torch.testing.assert_close(s, vocab.teacher_logits(t))
    assert student.hf.config.vocab_size == 26 and student.hf.bert.embeddings.word_embeddings.weight.shape == (26, 32)
    assert student.hf.cls.predictions.decoder.weight is student.hf.bert.embeddings.word_embeddings.weight


# ---------------------------------------------------------------- the standalone export


def test_export_round_trip_with_its_own_reduced_tokenizer(teacher, compressed, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    student, _ = compressed
    folder = export(student, tmp_path / "student")
    tokenizer = AutoTokenizer.from_pretrained(folder)  # plain transformers, no kdforge
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    assert len(tokenizer) == 26 and model.config.vocab_size == 26
    vocab = vocabulary_map(teacher.tokenizer, tokenizer)
    text = ["the cat likes the ball .", "a dog sees the green field ."]
    encoded = tokenizer(text, padding=True, return_tensors="pt")
    teacher_ids = teacher.tokenize(text)["input_ids"]
    # what the student was trained on: the teacher's tokenization through the map
    assert encoded["input_ids"].tolist() == vocab.student_ids(teacher_ids).tolist()
    with torch.no_grad():
        expected = student(dict(encoded), frozenset({"logits"})).logits
        assert torch.allclose(model(**encoded).logits, expected, atol=1e-5)
    reloaded = load_model(str(folder))
    assert reloaded.kind == "masked_lm" and len(reloaded.tokenizer) == 26
    assert reloaded.tokenizer.mask_token == "[MASK]" and reloaded.tokenizer.pad_token_id == 0


def test_a_dropped_word_piece_is_split_by_the_standalone_tokenizer():
    """Documented difference: training maps a dropped piece to [UNK]; the exported WordPiece splits it."""
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "play", "##ing", "playing"]
    teacher = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    kept = [0, 1, 2, 3, 4, 5, 6, 7]  # 'playing' dropped
    student = reduced_tokenizer(teacher, kept)
    vocab = vocabulary_map(teacher, student)
    teacher_ids = torch.tensor([teacher("the playing")["input_ids"]])
    assert student.convert_ids_to_tokens(vocab.student_ids(teacher_ids)[0].tolist()) == [
        "[CLS]",
        "the",
        "[UNK]",
        "[SEP]",
    ]
    split = ["[CLS]", "the", "play", "##ing", "[SEP]"]
    assert student.convert_ids_to_tokens(student("the playing")["input_ids"]) == split


def test_only_wordpiece_vocabularies_are_compressed():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2, "<unk>": 3}, [("a", "b")], unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>")
    with pytest.raises(ModelError, match="WordPiece"):
        reduced_tokenizer(tokenizer, [0, 1, 3])


# ---------------------------------------------------------------- training plumbing


def test_collator_maps_the_teachers_masked_ids_into_the_student_vocabulary(teacher, compressed):
    student, _ = compressed
    vocab = vocabulary_map(teacher.tokenizer, student.tokenizer)
    task = TASKS.get("mlm")(TaskSpec(name="mlm"))
    rows = [{"text": t, "index": i} for i, t in enumerate(sentences(16, seed=3))]
    batch = Collator(student, [teacher], task=task)(rows)
    t_ids, s_ids = batch.teacher_inputs[0]["input_ids"], batch.student_inputs["input_ids"]
    assert (t_ids == teacher.tokenizer.mask_token_id).any()  # the teacher sees the corrupted text
    assert torch.equal(s_ids, vocab.student_ids(t_ids))
    assert (s_ids < 26).all() and (s_ids == student.tokenizer.mask_token_id).sum() == (t_ids == 4).sum()
    picked = batch.labels != -100
    assert picked.any() and (batch.labels[picked] < 26).all()  # targets in student ids
    assert aligned(teacher, student) and shape(teacher, student).output_size == 26 == shape(student).output_size


def test_teacher_source_restricts_token_logits_and_never_caches_them(teacher, compressed):
    student, _ = compressed
    vocab = vocabulary_map(teacher.tokenizer, student.tokenizer)
    task = TASKS.get("mlm")(TaskSpec(name="mlm"))
    rows = [{"text": t, "index": i} for i, t in enumerate(sentences(4, seed=3))]
    batch = Collator(student, [teacher], task=task)(rows)
    source = TeacherSource(teacher, frozenset({"logits"}), cache=True, vocabulary=vocab)
    assert not source.cache_enabled  # token logits change with each epoch's masking
    views = source(batch)
    with torch.no_grad():
        full = teacher(batch.teacher_inputs[0], frozenset({"logits"})).logits
    assert views.logits.shape[-1] == 26
    torch.testing.assert_close(views.logits, full[..., vocab.kept])


# ---------------------------------------------------------------- the recipe field


def test_vocabulary_field_in_a_recipe(tmp_path):
    (tmp_path / "train.txt").write_text("the cat .\n")
    base = {"teacher": "minilm", "task": {"name": "mlm"}, "data": {"train": str(tmp_path / "train.txt")}}
    recipe = validate_recipe({**base, "student": {"num_layers": 2, "vocabulary": {"keep": 0.5, "multiple_of": 8}}})
    assert recipe.stages[0].student.vocabulary.keep == 0.5 and recipe.stages[0].student.vocabulary.multiple_of == 8
    assert validate_recipe({**base, "student": {"vocabulary": 0.25}}).stages[0].student.vocabulary.keep == 0.25
    with pytest.raises(RecipeError) as info:
        validate_recipe({**base, "student": {"vocabulary": {"keep": 1.5}}})
    assert "student.vocabulary.keep" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RecipeError, match="unknown key 'size'"):
        validate_recipe({**base, "student": {"vocabulary": {"keep": 0.5, "size": 3}}})


def test_vocabulary_needs_the_training_text(teacher):
    with pytest.raises(ModelError, match="training text"):
        build_student(teacher, StudentSpec(num_layers=2, vocabulary={"keep": 0.5}))
