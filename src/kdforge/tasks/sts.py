"""Sentence embeddings: train on unlabeled sentences, score by Spearman of cosine vs gold."""

from __future__ import annotations

import datasets

from kdforge.errors import DataError
from kdforge.evaluate.metrics import cosine_scores, pearson, spearman
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import DataSource
from kdforge.tasks.base import Task, register_task
from kdforge.tasks.data import sentences_of


@register_task("sts")
class STS(Task):
    """Semantic textual similarity / sentence embedding.

    Training data are sentences (both sides of pairs are used, duplicates once); labels are
    ignored, so any text is training data. Evaluation: Spearman x100 between the cosine of
    the two sentence embeddings and the gold score.
    """

    kind = "embedding"
    default_metric = "spearman"

    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        return sentences_of(sources)

    def is_labelled(self, ds: datasets.Dataset) -> bool:
        return {"text_pair", "score"} <= set(ds.column_names) and None not in ds["score"]

    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        if not self.is_labelled(ds):
            raise DataError(f"{where}: STS evaluation needs sentence pairs with gold scores")
        a = model.encode(ds["text"], batch_size)
        b = model.encode(ds["text_pair"], batch_size)
        predicted = cosine_scores(a, b)
        return {"spearman": spearman(predicted, ds["score"]), "pearson": pearson(predicted, ds["score"])}
