"""Token classification (slot filling, NER): one BIO tag per word, scored by span F1 as seqeval computes it."""

from __future__ import annotations

from collections.abc import Iterator

import datasets
import torch
from torch import Tensor

from kdforge.errors import DataError, ModelError
from kdforge.evaluate.metrics import span_metrics
from kdforge.methods.base import Batch
from kdforge.models.modes import evaluating
from kdforge.models.text_model import TextModel
from kdforge.models.views import Views
from kdforge.recipe.schema import DataSource
from kdforge.tasks.base import LabelledTask, register_task
from kdforge.tasks.data import read_rows

IGNORE = -100  # the label of positions no loss reads (cross-entropy's ignore_index)
OUTSIDE = "O"


def encode_words(tokenizer, words: list[list[str]], max_length: int) -> tuple[dict[str, Tensor], Tensor]:
    """Tokenize sentences given as words; the model inputs and where each word starts.

    The second tensor is ``[B, T]``: at the first sub-token of word ``i``, ``i``; elsewhere
    (special tokens, padding, a word's later sub-tokens) ``-1``. A word cut off by
    ``max_length``, or one the tokenizer turns into nothing, has no start.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"token classification maps sub-tokens back to words, which needs a fast tokenizer; "
            f"{type(tokenizer).__name__} is a slow one (save the model with its tokenizer.json)"
        )
    try:
        encoded = tokenizer(
            words, is_split_into_words=True, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
    except ValueError as err:  # e.g. a byte-level BPE tokenizer without add_prefix_space
        raise ModelError(f"cannot tokenize sentences given as words: {str(err).splitlines()[0]}") from None
    starts = torch.full(encoded["input_ids"].shape, -1, dtype=torch.long)
    for row in range(len(words)):
        previous = None
        for position, word in enumerate(encoded.word_ids(row)):
            if word is not None and word != previous:
                starts[row, position] = word
            previous = word
    return dict(encoded), starts


def align_labels(starts: Tensor, tags: list[list[int]]) -> Tensor:
    """``[B, T]`` targets: each word's tag id at its first sub-token, ``-100`` everywhere else."""
    labels = torch.full_like(starts, IGNORE)
    for row, row_tags in enumerate(tags):
        positions = (starts[row] >= 0).nonzero().flatten()
        if len(positions):
            labels[row, positions] = torch.tensor(row_tags)[starts[row, positions]]
    return labels


@torch.inference_mode()
def word_passes(
    model: TextModel, words: list[list[str]], needs: frozenset[str], batch_size: int = 64
) -> Iterator[tuple[list[int], Tensor, Views]]:
    """``model`` in eval mode over sentences given as words, in batches of similar length: each batch's
    sentence numbers, word starts (``encode_words``) and views (``needs``)."""
    order = sorted(range(len(words)), key=lambda i: -len(words[i]))  # similar lengths: less padding
    with evaluating(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            inputs, starts = encode_words(model.tokenizer, [words[i] for i in chunk], model.max_length)
            inputs = {k: v.to(model.device) for k, v in inputs.items()}
            yield chunk, starts, model(inputs, needs)


def word_tags(predicted: Tensor, starts: Tensor, count: int, names: list[str]) -> list[str]:
    """One sentence's tags from its per-sub-token tag ids ``[T]``, read at each word's first sub-token
    (a word without one, cut off by ``max_length``, gets ``O``)."""
    tags = [OUTSIDE] * count
    for position in (starts >= 0).nonzero().flatten().tolist():
        tags[int(starts[position])] = names[int(predicted[position])]
    return tags


def predict_tags(model: TextModel, words: list[list[str]], names: list[str], batch_size: int = 64) -> list[list[str]]:
    """Each word's predicted tag, read at the word's first sub-token (a word without one gets ``O``)."""
    out: list[list[str]] = [[] for _ in words]
    for chunk, starts, views in word_passes(model, words, frozenset({"logits"}), batch_size):
        predicted = views.logits.argmax(-1).cpu()
        for row, i in enumerate(chunk):
            out[i] = word_tags(predicted[row], starts[row], len(words[i]), names)
    return out


def tagged_rows(source: DataSource, split: str) -> tuple[list[dict], str]:
    """Rows of ``text``, ``words`` and, where the source has them, ``tags`` (one per word) and ``label``
    (the sentence's intent, which joint intent + slot models learn).

    Sources: the ATIS/SNIPS layout (``seq.in`` / ``seq.out`` / ``label``), or JSONL with ``words``
    (or ``tokens``) and ``tags`` lists, and ``label`` (or ``intent``).
    """
    rows, where = read_rows(source, split)
    out = []
    for number, row in enumerate(rows, 1):
        words = row.get("words", row.get("tokens"))
        if not isinstance(words, list) or not words:
            raise DataError(
                f"{where}: row {number} has no words; token classification reads the atis layout "
                "(seq.in + seq.out per split) or JSONL with 'words' and 'tags' lists"
            )
        item: dict = {"text": " ".join(str(w) for w in words), "words": [str(w) for w in words]}
        tags = row.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or len(tags) != len(words):
                count = len(tags) if isinstance(tags, list) else "no list of"
                raise DataError(f"{where}: row {number}: {count} tags for {len(words)} words")
            item["tags"] = [str(t) for t in tags]
        intent = row.get("label", row.get("intent"))
        if intent not in (None, ""):
            item["label"] = str(intent)
        out.append(item)
    return out, where


def model_tags(model: TextModel) -> list[str] | None:
    """The tag names a token classifier carries; ``None`` for transformers' placeholders (``LABEL_i``)."""
    id2label = model.config.id2label
    names = [str(id2label[i]) for i in range(len(id2label))]
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else names


def preview(names: list[str], shown: int = 8) -> str:
    """The first ``shown`` names, and how many there are in all when there are more (for one-line errors)."""
    listed = ", ".join(names[:shown])
    return listed if len(names) <= shown else f"{listed}, ... ({len(names)} in all)"


@register_task("token_classification")
class TokenClassification(LabelledTask):
    """One tag per word (BIO slot filling, NER); metric: span F1 x100 as seqeval computes it.

    Sentences arrive as words (the ATIS/SNIPS layout: ``seq.in`` words, ``seq.out`` tags) and are
    tokenized with ``is_split_into_words``. A word's tag is the target of its first sub-token;
    its later sub-tokens, special tokens and padding get ``-100``, so ``ce`` trains on exactly one
    position per word and ``kd`` (``positions: masked``, its default) distils those same
    positions, the ones evaluation reads. Tag names come from ``task.labels`` (in id order),
    else from the teacher's ``id2label`` in a distill stage, else from the training data (``O``
    first, the rest sorted); they are stored in the model's ``id2label``. Evaluation also gives
    span precision, recall and per-word accuracy; a word cut off by ``max_length`` counts as ``O``.
    """

    kind = "token_classifier"
    default_metric = "f1"
    augments_own_batches = True  # collate perturbs words one for one, so the tags stay aligned

    def _learn_labels(self, tags: set[str]) -> None:
        if self.label_names is not None:
            return
        self.label_names = sorted(tags, key=lambda tag: (tag != OUTSIDE, tag))
        if self.spec.num_labels and len(self.label_names) != self.spec.num_labels:
            raise DataError(
                f"task.num_labels is {self.spec.num_labels} but the training data has "
                f"{len(self.label_names)} tags ({preview(self.label_names)})"
            )

    def tag_ids(self, parts: list[tuple[list[dict], str]]) -> list[list[int]]:
        """The tag ids of every row of ``tagged_rows`` results, in order; learns the tag names first
        when the task has none. A row without tags, or with a tag outside the names, is an error."""
        for rows, where in parts:
            untagged = next((n for n, row in enumerate(rows, 1) if "tags" not in row), None)
            if untagged is not None:
                raise DataError(f"{where}: row {untagged} has no tags (seq.out); the task trains on tags")
        self._learn_labels({tag for rows, _ in parts for row in rows for tag in row["tags"]})
        assert self.label_names is not None
        lookup = {name: i for i, name in enumerate(self.label_names)}
        ids = []
        for rows, where in parts:
            for number, row in enumerate(rows, 1):
                unknown = next((tag for tag in row["tags"] if tag not in lookup), None)
                if unknown is not None:
                    raise DataError(
                        f"{where}: row {number}: tag {unknown!r} is not one of the task's tags "
                        f"({preview(self.label_names)})"
                    )
                ids.append([lookup[tag] for tag in row["tags"]])
        return ids

    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        parts = [tagged_rows(source, "train") for source in sources]
        tags = self.tag_ids(parts)
        rows = [row for part, _ in parts for row in part]
        return datasets.Dataset.from_dict(
            {
                "text": [row["text"] for row in rows],
                "words": [row["words"] for row in rows],
                "tags": tags,
                "index": list(range(len(rows))),
            }
        )

    def has_targets(self, ds: datasets.Dataset) -> bool:
        return "tags" in ds.column_names

    def collate(self, rows: list[dict], collator) -> Batch:
        """Words tokenized per model (one tokenization per distinct tokenizer); targets on the student's.

        With ``training.augment``, a perturbed row keeps its tags: word replacement and character
        distortion change words one for one (a word is never split or dropped), so the tags still
        fit; a row whose word count would change is left as it was.
        """
        if collator.augmenter is not None:
            perturbed = collator.augmenter(rows, collator.epoch)
            rows = [
                dict(new, words=new["text"].split())
                if new is not row and len(new["text"].split()) == len(row["words"])
                else row
                for row, new in zip(rows, perturbed, strict=True)
            ]
        words = [row["words"] for row in rows]
        # A compressed student (GLMD vocabulary) reads its source teacher's tokens through the id map.
        reader = collator.student if collator.source is None else collator.teachers[collator.source]
        student_inputs, starts = encode_words(reader.tokenizer, words, collator.max_length)
        teacher_inputs = [
            student_inputs if shared else encode_words(teacher.tokenizer, words, collator.max_length)[0]
            for teacher, shared in zip(collator.teachers, collator.shared, strict=True)
        ]
        if collator.vocabulary is not None:
            ids = collator.vocabulary.student_ids(student_inputs["input_ids"])
            student_inputs = {**student_inputs, "input_ids": ids}
        labels = align_labels(starts, [row["tags"] for row in rows]) if "tags" in rows[0] else None
        return Batch(student_inputs, teacher_inputs, torch.tensor([row["index"] for row in rows]), labels=labels)

    def load_eval(self, source: DataSource, split: str) -> datasets.Dataset:
        rows, _ = tagged_rows(source, split)
        return datasets.Dataset.from_list(rows)

    def is_labelled(self, ds: datasets.Dataset) -> bool:
        return "tags" in ds.column_names and None not in ds["tags"]

    def check_teacher(self, teacher: TextModel, name: str) -> None:
        """The teacher's tags become the task's (the student must predict the same ids), or must match them."""
        if teacher.kind != "token_classifier":
            return  # the pipeline reports the missing head
        tags = model_tags(teacher)
        if tags is None:
            if self.num_labels is not None and teacher.num_labels != self.num_labels:
                raise ModelError(f"teacher {name!r} has {teacher.num_labels} tags but the task has {self.num_labels}")
        elif self.label_names is None:
            self.label_names = tags
        elif self.label_names != tags:
            raise ModelError(
                f"teacher {name!r} predicts the tags {preview(tags)}, but the task's are "
                f"{preview(self.label_names)}; give task.labels in the teacher's order (or leave them out)"
            )

    def adopt_labels(self, model: TextModel) -> None:
        """For evaluating an existing token classifier: take its tag names when the task has none."""
        if self.label_names is None and model.kind == "token_classifier":
            self.label_names = model_tags(model)

    def _names(self, model: TextModel, where: str) -> list[str]:
        """The names of the model's outputs: its own ``id2label``, else the task's tags."""
        names = model_tags(model) or self.label_names
        if names is None or len(names) != model.num_labels:
            raise ModelError(
                f"{where}: cannot tell which tag each of the model's {model.num_labels} outputs is; set task.labels"
            )
        return names

    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        if not self.is_labelled(ds):
            raise DataError(f"{where}: evaluation needs tags for every sentence (a seq.out file)")
        predicted = predict_tags(model, list(ds["words"]), self._names(model, where), batch_size)
        return span_metrics(predicted, list(ds["tags"]))

    def agreement(self, teacher: TextModel, student: TextModel, ds: datasets.Dataset | None) -> dict[str, float] | None:
        """Per word: how often the student predicts the teacher's tag, and span F1 against the teacher's tags."""
        if ds is None or "words" not in ds.column_names:
            return None
        words = list(ds["words"])
        theirs = predict_tags(teacher, words, self._names(teacher, "teacher"))
        ours = predict_tags(student, words, self._names(student, "student"))
        same = sum(a == b for t, s in zip(theirs, ours, strict=True) for a, b in zip(t, s, strict=True))
        total = sum(len(w) for w in words)
        return {"prediction_agreement": same / max(total, 1) * 100, "f1_vs_teacher": span_metrics(ours, theirs)["f1"]}
