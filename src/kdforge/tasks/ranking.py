"""Passage ranking: distil a cross-encoder (teacher) into a bi-encoder (student).

The teacher is a cross-encoder: a sequence classifier reading ``(query, passage)`` pairs, whose
score is its logit (1 label) or the relevant logit minus the irrelevant one (2 labels, as a
classifier fine-tuned with cross-entropy gives; label 1 = relevant). The student is a sentence
encoder (kind ``embedding``) that encodes queries and passages apart and scores by cosine.

Data. A training row is a query, one relevant passage and one or more irrelevant ones:
- JSONL (or CSV/TSV with a header) with columns ``query``, ``positive`` and ``negatives`` (a
  list, or one passage) or ``negative``;
- a TSV of ``query<TAB>positive<TAB>negative`` triples, with or without that header (MS MARCO's
  ``triples.train`` layout);
- a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/SPLIT.tsv``; passage = title and
  text): one row per judged relevant pair of the split (``train`` unless ``split`` says
  otherwise) with ``TRAIN_NEGATIVES`` negatives mined by BM25 (below); ``limit`` counts queries.
  For other counts, write the triples out as JSONL.
Every row keeps as many negatives as the row with fewest has (the first ones), so batches are
``[B, P]`` lists. An evaluation row is a query, its candidate passages and their relevance: from
a BEIR folder (split ``dev``/``test`` or ``split``), the judged relevant passages plus the top
BM25 hits (``EVAL_CANDIDATES`` in all, in BM25 order); from a triples file, each query's
positives and negatives. This re-ranks a short list that always holds the relevant passages,
so the numbers are higher than full-corpus retrieval (BEIR's leaderboard) and not comparable to it.
Metrics (x100): MRR@10 and nDCG@10 (linear gain, as trec_eval and BEIR compute it).

Negatives are mined without a teacher, cheaply and reproducibly: BM25 (Robertson et al.;
k1 = 0.9, b = 0.4, Anserini's defaults, which BEIR's BM25 baseline uses) over lower-cased word
tokens, computed with scipy sparse matrices; ties go to the earlier document. BM25 hard
negatives are close to the query in wording, which is what the cross-encoder's scores then
rank; some may be unjudged relevant passages, and margin/listwise distillation follows the
teacher's scores there rather than the label.

Engine design. ``Task.collate`` lets the task build its own ``Batch`` from rows:
- ``student_inputs``: the ``B`` queries, tokenized for the student;
- ``candidate_inputs``: the ``B * P`` passages (positive first), tokenized for the student; the
  trainer's ``Objective`` runs the student on them separately and hands methods
  ``Views.candidates``;
- ``teacher_inputs[k]``: the ``B * P`` (query, passage) pairs, tokenized by teacher ``k``. They
  go through ``TeacherSource`` like any teacher input, and ``teacher_index`` (``index * P + j``)
  gives every pair its own id, so the cross-encoder's logits are cached per pair after the
  first epoch;
- ``extra``: which tokens are text (not special, not padding) in the student's queries and
  passages and which are query / passage tokens in each teacher pair (``virt`` aligns them).
Ranking methods read ``[B, P]`` score lists from these views (``methods/ranking.py``).

Task ``reranking`` trains the cross-encoder itself (a ``kind: finetune`` stage on the same
ranking data, pointwise: each (query, passage) pair labelled relevant or not) and evaluates it
with the same metrics, so a recipe can fine-tune the teacher and then distil it.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import datasets
import numpy as np
import torch
from scipy import sparse

from kdforge.errors import DataError, ModelError
from kdforge.evaluate.metrics import mrr_at_k, ndcg_at_k, spearman
from kdforge.methods.base import Batch
from kdforge.methods.ranking import cross_encoder_scores
from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import DataSource
from kdforge.tasks.base import Task, register_task
from kdforge.tasks.data import read_jsonl, read_rows

TRAIN_NEGATIVES = 4  # BM25-mined negatives per training row from a BEIR folder
EVAL_CANDIDATES = 30  # candidates per query in BEIR evaluation lists (relevant ones included)
AGREEMENT_QUERIES = 100  # evaluation queries on which teacher and student rankings are compared
CUTOFF = 10
BM25_K1, BM25_B = 0.9, 0.4
_WORD = re.compile(r"\w+")
_COLUMNS = ("query", "positive", "negatives")


# ----- reading ranking data ---------------------------------------------------------------
def is_beir(source: DataSource) -> bool:
    return source.path is not None and (Path(source.path) / "corpus.jsonl").is_file()


def _passage(doc: dict) -> str:
    return " ".join(part for part in (doc.get("title") or "", doc.get("text") or "") if part).strip()


class BM25:
    """Okapi BM25 over a fixed corpus: ``sum_t idf(t) tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))``.

    ``idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))``; each query term counts once. Scores are
    computed for chunks of queries against the whole corpus (dense), which suits corpora up to
    about a million passages.
    """

    def __init__(self, documents: list[str], k1: float = BM25_K1, b: float = BM25_B) -> None:
        self.vocabulary: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for row, text in enumerate(documents):
            for term, count in Counter(_WORD.findall(text.lower())).items():
                rows.append(row)
                cols.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                counts.append(count)
        shape = (len(documents), len(self.vocabulary))
        tf = sparse.csr_matrix((np.asarray(counts, dtype=np.float32), (rows, cols)), shape=shape)
        lengths = np.asarray(tf.sum(1)).ravel()
        df = np.bincount(tf.indices, minlength=shape[1])
        idf = np.log(1 + (shape[0] - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        per_entry = np.repeat(norm, np.diff(tf.indptr)).astype(np.float32)
        tf.data = idf[tf.indices] * tf.data * (k1 + 1) / (tf.data + per_entry)
        self.weights = tf  # [documents, terms]

    def scores(self, queries: list[str]) -> np.ndarray:
        """``[len(queries), documents]`` BM25 scores."""
        rows, cols = [], []
        for row, text in enumerate(queries):
            terms = sorted({self.vocabulary[t] for t in _WORD.findall(text.lower()) if t in self.vocabulary})
            rows += [row] * len(terms)
            cols += terms
        shape = (len(queries), len(self.vocabulary))
        q = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
        return (q @ self.weights.T).toarray()

    def ranked(self, queries: list[str], chunk: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per query, in order: its scores over the corpus and the document indices best first (ties: earlier)."""
        for start in range(0, len(queries), chunk):
            scores = self.scores(queries[start : start + chunk])
            yield from zip(scores, np.argsort(-scores, axis=1, kind="stable"), strict=True)


@lru_cache(maxsize=2)
def _beir_corpus(folder: str) -> tuple[list[str], list[str], BM25]:
    docs = read_jsonl(Path(folder) / "corpus.jsonl")
    texts = [_passage(d) for d in docs]
    return [str(d["_id"]) for d in docs], texts, BM25(texts)


def _beir_split(source: DataSource, split: str) -> tuple[list[str], list[set[int]], list[str], BM25]:
    """Queries of ``split`` that have relevant passages, their relevant document indices, the corpus."""
    folder = Path(source.path or "")
    name = source.split or split
    qrels = folder / "qrels" / f"{name}.tsv"
    if not qrels.is_file():
        found = ", ".join(sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))) or "none"
        raise DataError(f"{folder}: no qrels/{name}.tsv (splits: {found}); set 'split'")
    ids, texts, bm25 = _beir_corpus(str(folder))
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(folder / "queries.jsonl")}
    relevant: dict[str, set[int]] = {}
    with qrels.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if float(row["score"]) > 0 and row["corpus-id"] in position and row["query-id"] in queries:
                relevant.setdefault(row["query-id"], set()).add(position[row["corpus-id"]])
    chosen = list(relevant)[: source.limit] if source.limit else list(relevant)
    if not chosen:
        raise DataError(f"{qrels}: no judged relevant passages")
    return [queries[q] for q in chosen], [relevant[q] for q in chosen], texts, bm25


def beir_triples(source: DataSource, split: str = "train", negatives: int = TRAIN_NEGATIVES) -> list[dict]:
    """One row per relevant (query, passage) pair, with the query's top BM25 non-relevant hits."""
    queries, relevant, texts, bm25 = _beir_split(source, split)
    rows = []
    for query, positives, (_, ranked) in zip(queries, relevant, bm25.ranked(queries), strict=True):
        mined = _hits(ranked, positives, texts, negatives)
        rows += [
            {"query": query, "positive": texts[p], "negatives": [texts[i] for i in mined]} for p in sorted(positives)
        ]
    return rows


def _hits(ranked: np.ndarray, positives: set[int], texts: list[str], count: int) -> list[int]:
    """The first ``count`` documents of ``ranked`` that are not relevant, nor a copy of a text seen before."""
    seen = {texts[p] for p in positives}
    hits = []
    for i in ranked:
        if len(hits) == count:
            break
        if texts[i] not in seen:
            seen.add(texts[i])
            hits.append(int(i))
    return hits


def beir_candidates(source: DataSource, split: str, size: int = EVAL_CANDIDATES) -> dict[str, list]:
    """Per query: the relevant passages and the top BM25 hits, ``size`` in all, in BM25 order."""
    queries, relevant, texts, bm25 = _beir_split(source, split)
    columns: dict[str, list] = {"text": queries, "candidates": [], "relevance": []}
    for positives, (scores, ranked) in zip(relevant, bm25.ranked(queries), strict=True):
        hits = _hits(ranked, positives, texts, max(0, size - len(positives)))
        chosen = sorted([*positives, *hits], key=lambda i: (-scores[i], i))
        columns["candidates"].append([texts[i] for i in chosen])
        columns["relevance"].append([int(i in positives) for i in chosen])
    return columns


def _headerless_triples(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != 3:
                raise DataError(f"{path}:{number}: expected query, positive, negative (3 tab-separated fields)")
            rows.append(dict(zip(("query", "positive", "negative"), fields, strict=True)))
    return rows


def file_triples(source: DataSource, split: str) -> tuple[list[dict], str]:
    """Rows with ``query``, ``positive`` and ``negatives`` (a list) from a JSONL/CSV/TSV source."""
    rows, where = read_rows(source, split)
    if where.endswith(".tsv") and len(rows[0]) == 3 and not set(rows[0]) & {*_COLUMNS, "negative"}:
        rows = _headerless_triples(Path(where))  # the "header" was a triple
        rows = rows[: source.limit] if source.limit else rows
    columns = list(rows[0])
    missing = [c for c in _COLUMNS if c not in columns and not (c == "negatives" and "negative" in columns)]
    if missing:
        raise DataError(
            f"{where}: ranking data needs the columns query, positive and negatives (or negative); "
            f"missing {', '.join(missing)} (columns: {', '.join(columns)})"
        )
    out = []
    for number, row in enumerate(rows, 1):
        negatives = row.get("negatives", row.get("negative"))
        negatives = [negatives] if isinstance(negatives, str) else list(negatives or [])
        if not row["query"] or not row["positive"] or not negatives:
            raise DataError(f"{where}: row {number} needs a query, a positive and at least one negative")
        out.append(
            {"query": str(row["query"]), "positive": str(row["positive"]), "negatives": [str(n) for n in negatives]}
        )
    return out, where


def ranking_rows(sources: list[DataSource], split: str = "train") -> list[dict]:
    rows = []
    for source in sources:
        rows += beir_triples(source, split) if is_beir(source) else file_triples(source, split)[0]
    return rows


# ----- scoring ------------------------------------------------------------------------------
def candidate_scores(model: TextModel, queries: list[str], candidates: list[list[str]], batch_size: int = 64) -> list:
    """Each query's candidate scores: cross-encoder scores for a classifier, else cosine of embeddings."""
    if model.kind == "classifier":
        pairs_q = [q for q, c in zip(queries, candidates, strict=True) for _ in c]
        flat = cross_encoder_scores(model.predict(pairs_q, [p for c in candidates for p in c], batch_size))
    else:
        unique = list(dict.fromkeys(p for c in candidates for p in c))
        where = {p: i for i, p in enumerate(unique)}
        q = torch.nn.functional.normalize(model.encode(queries, batch_size), dim=-1)
        p = torch.nn.functional.normalize(model.encode(unique, batch_size), dim=-1)
        owner = torch.tensor([b for b, c in enumerate(candidates) for _ in c])
        flat = (q[owner] * p[torch.tensor([where[t] for c in candidates for t in c])]).sum(-1)
    return list(torch.split(flat.float(), [len(c) for c in candidates]))


def _content_mask(encoded: dict[str, torch.Tensor]) -> torch.Tensor:
    """Real text tokens (not special, not padding) of an encoding made with its special-token mask."""
    special = encoded.pop("special_tokens_mask").bool()
    return encoded["attention_mask"].bool() & ~special


def pair_segments(encoded: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per token of a (query, passage) encoding: 1 = query text, 2 = passage text, 0 = special or padding.

    The passage starts after the first special token that follows query text (BERT's ``[SEP]``,
    RoBERTa's ``</s></s>``), so no tokenizer-specific layout is assumed.
    """
    content = _content_mask(encoded)
    special = ~content & encoded["attention_mask"].bool()
    boundary = special & (content.cumsum(1) > 0)
    passage = content & (boundary.cumsum(1) > 0)
    return content.long() + passage.long()


def _encode(model: TextModel, texts: list[str], pairs: list[str] | None, max_length: int) -> dict[str, torch.Tensor]:
    encoded = model.tokenizer(
        texts,
        pairs,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    return dict(encoded)


@register_task("ranking")
class Ranking(Task):
    """Cross-encoder -> bi-encoder distillation on queries with candidate passages.

    Training rows: a query, a relevant passage and irrelevant ones (JSONL/TSV triples or a BEIR
    folder with BM25-mined negatives). Evaluation: MRR@10 and nDCG@10 (x100) of each query's
    candidate list ranked by the student's cosine and by the teacher's cross-encoder score.
    """

    kind = "embedding"
    teacher_kind = "classifier"
    default_metric = "ndcg@10"

    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        rows = ranking_rows(sources)
        keep = min(len(r["negatives"]) for r in rows)
        return datasets.Dataset.from_dict(
            {
                "text": [r["query"] for r in rows],
                "passages": [[r["positive"], *r["negatives"][:keep]] for r in rows],
                "index": list(range(len(rows))),
            }
        )

    def collate(self, rows: list[dict], collator) -> Batch:
        queries = [r["text"] for r in rows]
        passages = [p for r in rows for p in r["passages"]]
        group = len(rows[0]["passages"])
        student_inputs = _encode(collator.student, queries, None, collator.max_length)
        candidate_inputs = _encode(collator.student, passages, None, collator.max_length)
        extra = {"query_tokens": _content_mask(student_inputs), "candidate_tokens": _content_mask(candidate_inputs)}
        pair_queries = [q for q in queries for _ in range(group)]
        teacher_inputs = []
        for k, teacher in enumerate(collator.teachers):
            encoded = _encode(teacher, pair_queries, passages, collator.max_length)
            extra[f"teacher{k}_segments"] = pair_segments(encoded)
            teacher_inputs.append(encoded)
        index = torch.tensor([r["index"] for r in rows])
        return Batch(
            student_inputs=student_inputs,
            teacher_inputs=teacher_inputs,
            index=index,
            candidate_inputs=candidate_inputs,
            teacher_index=(index[:, None] * group + torch.arange(group)).flatten(),
            extra=extra,
        )

    def check_teacher(self, teacher: TextModel, name: str) -> None:
        if teacher.kind != "classifier" or teacher.num_labels not in (1, 2):
            what = f"a classifier with {teacher.num_labels} labels" if teacher.kind == "classifier" else "no classifier"
            raise ModelError(
                f"teacher {name!r} is not a cross-encoder ({what}); ranking needs a sequence classifier of "
                "(query, passage) pairs with 1 or 2 labels: fine-tune one in a 'kind: finetune' stage of task "
                "'reranking' and use stage:NAME as the teacher"
            )

    def load_eval(self, source: DataSource, split: str) -> datasets.Dataset:
        if is_beir(source):
            return datasets.Dataset.from_dict(beir_candidates(source, split))
        rows, _ = file_triples(source, split)
        lists: dict[str, dict[str, int]] = {}
        for row in rows:
            candidates = lists.setdefault(row["query"], {})
            candidates[row["positive"]] = 1
            for negative in row["negatives"]:
                candidates.setdefault(negative, 0)
        return datasets.Dataset.from_dict(
            {
                "text": list(lists),
                "candidates": [list(c) for c in lists.values()],
                "relevance": [list(c.values()) for c in lists.values()],
            }
        )

    def is_labelled(self, ds: datasets.Dataset) -> bool:
        return {"text", "candidates", "relevance"} <= set(ds.column_names)

    def evaluate(self, model: TextModel, ds: datasets.Dataset, where: str, batch_size: int = 64) -> dict[str, float]:
        if not self.is_labelled(ds):
            raise DataError(f"{where}: ranking evaluation needs queries with candidate passages and their relevance")
        scores = candidate_scores(model, list(ds["text"]), list(ds["candidates"]), batch_size)
        lists = list(zip(scores, ds["relevance"], strict=True))
        return {
            f"mrr@{CUTOFF}": 100 * float(np.mean([mrr_at_k(s, r, CUTOFF) for s, r in lists])),
            f"ndcg@{CUTOFF}": 100 * float(np.mean([ndcg_at_k(s, r, CUTOFF) for s, r in lists])),
        }

    def agreement(self, teacher: TextModel, student: TextModel, ds: datasets.Dataset | None) -> dict[str, float] | None:
        """Per query: Spearman between the teacher's and the student's candidate scores; same top passage."""
        if ds is None or not self.is_labelled(ds):
            return {}
        ds = ds.select(range(min(len(ds), AGREEMENT_QUERIES)))
        queries, candidates = list(ds["text"]), list(ds["candidates"])
        teacher_lists = candidate_scores(teacher, queries, candidates)
        lists = list(zip(teacher_lists, candidate_scores(student, queries, candidates), strict=True))
        with warnings.catch_warnings():  # a list of tied scores has no rank correlation: left out
            warnings.simplefilter("ignore")
            rhos = [spearman(t.numpy(), s.numpy()) for t, s in lists if len(t) > 1]
            spearman_mean = float(np.nanmean(rhos)) if rhos and not np.all(np.isnan(rhos)) else float("nan")
        same_top = [int(t.argmax()) == int(s.argmax()) for t, s in lists]
        return {"score_spearman": spearman_mean, "top1_agreement": float(np.mean(same_top)) * 100}


@register_task("reranking")
class Reranking(Ranking):
    """A cross-encoder on the ranking data: each (query, passage) pair is relevant (1) or not (0).

    For the ``kind: finetune`` stage that makes a ranking teacher (2 labels; the score is the
    relevant logit minus the other) or for distilling one cross-encoder into a smaller one.
    Evaluated like ``ranking``, by the cross-encoder's scores.
    """

    kind = "classifier"
    teacher_kind = None

    @property
    def num_labels(self) -> int | None:
        return 2

    def train_dataset(self, sources: list[DataSource]) -> datasets.Dataset:
        pairs: dict[tuple[str, str], int] = {}
        for row in ranking_rows(sources):
            pairs[(row["query"], row["positive"])] = 1
            for negative in row["negatives"]:
                pairs.setdefault((row["query"], negative), 0)
        return datasets.Dataset.from_dict(
            {
                "text": [q for q, _ in pairs],
                "text_pair": [p for _, p in pairs],
                "label": list(pairs.values()),
                "index": list(range(len(pairs))),
            }
        )

    def collate(self, rows: list[dict], collator) -> Batch | None:
        return None  # (query, passage) pairs: the Collator's own batches

    def check_teacher(self, teacher: TextModel, name: str) -> None:
        if teacher.kind == "classifier" and teacher.num_labels != 2:
            raise ModelError(
                f"teacher {name!r} has {teacher.num_labels} labels; reranking needs 2 (irrelevant, relevant)"
            )

    def configure(self, model: TextModel) -> None:
        model.hf.config.id2label = {0: "irrelevant", 1: "relevant"}
        model.hf.config.label2id = {"irrelevant": 0, "relevant": 1}

    def agreement(self, teacher: TextModel, student: TextModel, ds: datasets.Dataset | None) -> dict[str, float] | None:
        return super().agreement(teacher, student, ds) if ds is not None else None
