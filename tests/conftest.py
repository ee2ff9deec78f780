"""Tiny models built from configs (random weights) and seeded synthetic data: no network needed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from kdforge.models.loading import quiet_transformers

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

SUBJECTS = ["the cat", "a dog", "my friend", "the teacher", "a bird", "the child", "our team", "the farmer"]
VERBS = ["likes", "sees", "eats", "finds", "paints", "moves", "wants", "keeps"]
OBJECTS = ["the ball", "a red apple", "the old house", "some bread", "a small boat", "the green field"]
POSITIVE = ["good", "great", "lovely", "happy", "bright"]
NEGATIVE = ["bad", "awful", "sad", "dark", "boring"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary() -> list[str]:
    words = {w for phrase in SUBJECTS + VERBS + OBJECTS for w in phrase.split()}
    words |= set(POSITIVE) | set(NEGATIVE) | {"it", "was", "very", "and", "not", "."}
    return SPECIAL + sorted(words)


def make_tokenizer():
    from transformers import BertTokenizer

    vocab = vocabulary()
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=64)


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        if rng.random() < 0.5:
            s += f" and it was {rng.choice(POSITIVE + NEGATIVE)}"
        out.append(s + " .")
    return out


def labelled(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Sentiment-like data: label 1 when the sentence uses a positive word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        word = rng.choice(POSITIVE if label else NEGATIVE)
        rows.append((f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} and it was {word} .", label))
    return rows


def bert_config(layers: int = 4, hidden: int = 32, heads: int = 4, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(vocabulary()),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
        **extra,
    )


@pytest.fixture(scope="session", autouse=True)
def _quiet():
    quiet_transformers()
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embedding_teacher_dir(tmp_path_factory) -> Path:
    """A 4-layer BERT sentence encoder saved as a sentence-transformers folder (mean pooling, normalized)."""
    from transformers import BertModel

    from kdforge.export import save_sentence_transformer
    from kdforge.models.text_model import TextModel

    torch.manual_seed(1)
    model = TextModel(BertModel(bert_config()).eval(), make_tokenizer(), "embedding", "mean", normalize=True)
    return save_sentence_transformer(model, tmp_path_factory.mktemp("teacher") / "st")


@pytest.fixture(scope="session")
def classifier_teacher_dir(tmp_path_factory) -> Path:
    """A 4-layer BERT classifier with 2 labels saved as a Hugging Face folder."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(2)
    model = BertForSequenceClassification(bert_config(num_labels=2)).eval()
    folder = tmp_path_factory.mktemp("teacher") / "clf"
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Synthetic files in the layouts kdforge reads."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "train.txt").write_text("\n".join(sentences(192, seed=0)) + "\n")
    (folder / "held_out.txt").write_text("\n".join(sentences(48, seed=1)) + "\n")
    rng = random.Random(3)
    pairs = sentences(80, seed=4)
    with (folder / "sts-dev.csv").open("w") as handle:
        for i in range(0, 80, 2):
            handle.write(
                f"main-captions\tMSRvid\t2012test\t{i:04d}\t{rng.uniform(0, 5):.3f}\t{pairs[i]}\t{pairs[i + 1]}\n"
            )
    with (folder / "sst.tsv").open("w") as handle:
        handle.write("sentence\tlabel\n")
        for text, label in labelled(160, seed=5):
            handle.write(f"{text}\t{label}\n")
    with (folder / "sst-dev.tsv").open("w") as handle:
        handle.write("sentence\tlabel\n")
        for text, label in labelled(40, seed=6):
            handle.write(f"{text}\t{label}\n")
    with (folder / "nli.jsonl").open("w") as handle:
        for i, (text, label) in enumerate(labelled(40, seed=7)):
            name = "entailment" if label else "not_entailment"
            handle.write(json.dumps({"premise": text, "hypothesis": pairs[i], "label": name, "idx": i}) + "\n")
    return folder


def needs_shared_data(name: str) -> Path:
    """Skip the calling test when ../shared/data/NAME is absent (a checkout without shared data)."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"../shared/data/{name} is not present")
    return path


def sts_recipe(teacher: Path, data: Path, **training) -> dict:
    """A small embedding-distillation recipe on the synthetic data."""
    return {
        "name": "tiny-sts",
        "teacher": str(teacher),
        "student": {"num_layers": 2},
        "task": {"name": "sts"},
        "data": {"train": [str(data / "train.txt")], "eval": str(data / "sts-dev.csv")},
        "methods": [{"name": "embedding_mse"}],
        "training": {"batch_size": 16, "lr": 1e-3, "max_steps": 12, "save_every": 4, "log_every": 1, **training},
        "output": {"benchmark": False},
    }


def classification_recipe(teacher: Path, data: Path, methods: list[dict] | None = None, **training) -> dict:
    """A small classifier-distillation recipe on the synthetic sentiment data."""
    return {
        "name": "tiny-clf",
        "teacher": str(teacher),
        "student": {"num_layers": 2},
        "task": {"name": "classification"},
        "data": {"train": [str(data / "sst.tsv")], "eval": str(data / "sst-dev.tsv")},
        "methods": methods or [{"name": "kd", "temperature": 2.0}],
        "training": {"batch_size": 16, "lr": 1e-3, "max_steps": 12, "save_every": 4, "log_every": 1, **training},
        "output": {"benchmark": False},
    }


def ranking_rows(n: int, negatives: int = 3, seed: int = 0) -> list[dict]:
    """Query / relevant passage (same subject and object) / irrelevant passages (neither)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        subject, obj = rng.choice(SUBJECTS), rng.choice(OBJECTS)
        query = f"{subject} {rng.choice(VERBS)} {obj}"
        positive = f"{subject} {rng.choice(VERBS)} {obj} and it was {rng.choice(POSITIVE + NEGATIVE)} ."
        others = [
            f"{rng.choice([s for s in SUBJECTS if s != subject])} {rng.choice(VERBS)} "
            f"{rng.choice([o for o in OBJECTS if o != obj])} ."
            for _ in range(negatives)
        ]
        rows.append({"query": query, "positive": positive, "negatives": others})
    return rows


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory) -> Path:
    """A 4-layer BERT cross-encoder (1 label: the score) saved as a Hugging Face folder.

    Large initial weights give the random teacher scores that differ by several units between
    the passages of a query, and peaked attention maps.
    """
    from transformers import BertForSequenceClassification

    torch.manual_seed(3)
    model = BertForSequenceClassification(bert_config(num_labels=1, initializer_range=0.5)).eval()
    folder = tmp_path_factory.mktemp("teacher") / "cross"
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def ranking_dir(tmp_path_factory) -> Path:
    """Ranking data: JSONL train/dev, a headerless TSV of triples and a small BEIR folder."""
    folder = tmp_path_factory.mktemp("ranking")
    for name, n, seed in (("train.jsonl", 64, 20), ("dev.jsonl", 12, 21)):
        with (folder / name).open("w") as handle:
            for row in ranking_rows(n, seed=seed):
                handle.write(json.dumps(row) + "\n")
    with (folder / "triples.tsv").open("w") as handle:
        for row in ranking_rows(8, negatives=1, seed=22):
            handle.write(f"{row['query']}\t{row['positive']}\t{row['negatives'][0]}\n")
    beir = folder / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = sentences(40, seed=23)
    with (beir / "corpus.jsonl").open("w") as handle:
        for i, text in enumerate(docs):
            handle.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with (beir / "queries.jsonl").open("w") as handle:
        for i in range(12):
            handle.write(json.dumps({"_id": f"q{i}", "text": " ".join(docs[i].split()[:5])}) + "\n")
    for split, queries in (("train", range(8)), ("test", range(8, 12))):
        with (beir / "qrels" / f"{split}.tsv").open("w") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for i in queries:
                handle.write(f"q{i}\td{i}\t1\n")
    return folder
