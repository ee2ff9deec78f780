"""Augmentation: word replacement (neighbours from the embedding table) and character distortion, reproducible per
epoch, off the cache."""

from __future__ import annotations

import pytest
import torch

import kdforge
from kdforge.engine.trainer import _augmenter
from kdforge.errors import RecipeError
from kdforge.models.text_model import TextModel
from kdforge.recipe import validate_recipe
from kdforge.recipe.schema import AugmentSpec, TaskSpec, TrainingSpec
from kdforge.tasks import TASKS
from kdforge.tasks.augment import Augmenter, WordNeighbours
from tests.conftest import bert_config, classification_recipe, make_tokenizer, sentences


@pytest.fixture(scope="module")
def model() -> TextModel:
    """A tiny encoder whose embedding table puts "great" next to "good" and "awful" next to "bad"."""
    from transformers import BertModel

    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    hf = BertModel(bert_config()).eval()
    vocab = tokenizer.get_vocab()
    table = hf.get_input_embeddings().weight
    with torch.no_grad():
        table[vocab["great"]] = table[vocab["good"]] * 2.0 + 0.01 * torch.randn(table.size(1))
        table[vocab["awful"]] = table[vocab["bad"]] + 0.01 * torch.randn(table.size(1))
    return TextModel(hf, tokenizer, "embedding", "mean")


def test_neighbours_are_nearest_by_cosine_and_skip_the_word_itself(model):
    neighbours = WordNeighbours(model, 3)
    assert neighbours("good")[0] == "great"  # twice as long, same direction: cosine ignores the length
    assert neighbours("Bad")[0] == "awful"  # the tokenizer lowercases, so does the lookup
    assert "good" not in neighbours("good") and len(neighbours("good")) == 3
    assert all(w.isalpha() and len(w) > 1 and not w.startswith("[") for w in neighbours("cat"))
    assert neighbours("zebra") == []  # not one word piece: left alone


def test_every_word_replaced_at_full_share_and_probability(model):
    augment = Augmenter(AugmentSpec(share=1.0, probability=1.0, candidates=1), WordNeighbours(model, 1), seed=0)
    [row] = augment([{"text": "it was good , zebra 42 .", "label": 1, "index": 7}], epoch=0)
    words = row["text"].split()
    assert words[2] == "great" and words[3:] == [",", "zebra", "42", "."]  # punctuation, unknowns, numbers stay
    assert words[0] != "it" and words[1] != "was"
    assert row["label"] == 1 and row["index"] == 7


def test_rows_change_per_epoch_reproducibly_and_in_the_given_share(model):
    augment = Augmenter(AugmentSpec(share=0.5, probability=0.5), WordNeighbours(model, 5), seed=3)
    rows = [{"text": text, "index": i} for i, text in enumerate(sentences(400, seed=2))]
    first, again, later = augment(rows, 0), augment(rows, 0), augment(rows, 1)
    assert first == again
    assert first != later
    changed = sum(a["text"] != b["text"] for a, b in zip(rows, first, strict=True))
    assert 0.35 * len(rows) < changed < 0.55 * len(rows)  # share 0.5, minus rows whose draw replaced nothing
    assert all(a["index"] == b["index"] for a, b in zip(rows, first, strict=True))


def test_pairs_are_perturbed_on_both_sides(model):
    augment = Augmenter(AugmentSpec(share=1.0, probability=1.0), WordNeighbours(model, 2), seed=0)
    [row] = augment([{"text": "the cat likes the ball", "text_pair": "a dog eats some bread", "index": 0}], 0)
    assert row["text"] != "the cat likes the ball" and row["text_pair"] != "a dog eats some bread"


def test_distillation_with_augmentation_trains_and_never_reuses_teacher_outputs(
    classifier_teacher_dir, data_dir, tmp_path
):
    plain = kdforge.run(
        validate_recipe(classification_recipe(classifier_teacher_dir, data_dir, max_steps=24)),
        tmp_path / "plain",
        show=False,
    )
    recipe = classification_recipe(classifier_teacher_dir, data_dir, max_steps=24, augment={"share": 0.5})
    augmented = kdforge.run(validate_recipe(recipe), tmp_path / "augmented", show=False)
    assert plain["training"]["teacher_cache_hits"] > 0
    assert augmented["training"]["teacher_cache_hits"] == 0  # each epoch's rows are new to the teacher
    assert augmented["training"]["final_loss"] != plain["training"]["final_loss"]
    assert (tmp_path / "augmented" / "student" / "config.json").is_file()


def test_augmenting_a_task_with_its_own_batches_is_refused(model):
    ranking = TASKS.get("ranking")(TaskSpec(name="ranking"))
    with pytest.raises(RecipeError, match="training.augment: the ranking task lays out its own batches"):
        _augmenter(TrainingSpec(augment=AugmentSpec()), model, [], ranking, 0)
    # token classification lays out its own batches too, but perturbs them itself (tags stay aligned)
    tagging = TASKS.get("token_classification")(TaskSpec(name="token_classification"))
    assert _augmenter(TrainingSpec(augment=AugmentSpec(probability=0, distortion=0.2)), model, [], tagging, 0)


def test_recipe_rejects_a_share_out_of_range(classifier_teacher_dir, data_dir):
    recipe = classification_recipe(classifier_teacher_dir, data_dir, augment={"share": 0})
    with pytest.raises(RecipeError, match="augment.share"):
        validate_recipe(recipe)


def one_edit_apart(before: str, after: str) -> bool:
    """``after`` is ``before`` with one character deleted, inserted or moved (or unchanged)."""
    if abs(len(before) - len(after)) > 1:
        return False
    if len(before) == len(after):
        return sorted(before) == sorted(after)
    short, long = sorted((before, after), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_distortion_edits_words_by_one_character_reproducibly():
    augment = Augmenter(AugmentSpec(share=1.0, probability=0.0, distortion=1.0), None, seed=0)
    rows = [{"text": text, "index": i} for i, text in enumerate(sentences(50, seed=4))]
    first = augment(rows, 0)
    assert first == augment(rows, 0) and first != augment(rows, 1)
    pairs = [
        (b, a)
        for row, new in zip(rows, first, strict=True)
        for b, a in zip(row["text"].split(), new["text"].split(), strict=True)
    ]
    assert all(one_edit_apart(b, a) for b, a in pairs)
    assert all(a == b for b, a in pairs if not b.isalpha() or len(b) < 2)  # punctuation and single letters stay
    assert sum(a != b for b, a in pairs) > 0.6 * sum(b.isalpha() and len(b) > 1 for b, _ in pairs)


def test_distortion_probability_is_per_word():
    augment = Augmenter(AugmentSpec(share=1.0, probability=0.0, distortion=0.3), None, seed=1)
    rows = [{"text": "the farmer wants the green field", "index": i} for i in range(300)]
    changed = [
        a != b for row in augment(rows, 0) for a, b in zip(row["text"].split(), rows[0]["text"].split(), strict=True)
    ]
    assert 0.2 < sum(changed) / len(changed) < 0.3  # 0.3, less the moves that put a letter back


def test_distortion_alone_needs_no_embedding_table():
    from kdforge.models.pqrnn import PQRNNConfig, PQRNNForSequenceClassification

    pqrnn = TextModel(
        PQRNNForSequenceClassification(PQRNNConfig(projection_features=32)), make_tokenizer(), "classifier"
    )
    augment = _augmenter(
        TrainingSpec(augment=AugmentSpec(share=1.0, probability=0.0, distortion=0.5)), pqrnn, [], None, 0
    )
    [row] = augment([{"text": "the farmer wants the green field", "index": 0}], 0)
    assert augment.neighbours is None and row["text"] != "the farmer wants the green field"


def test_recipe_rejects_an_augmentation_that_changes_nothing(classifier_teacher_dir, data_dir):
    recipe = classification_recipe(classifier_teacher_dir, data_dir, augment={"probability": 0})
    with pytest.raises(RecipeError, match="change nothing"):
        validate_recipe(recipe)
