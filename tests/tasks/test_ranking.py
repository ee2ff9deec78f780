"""The ranking task: reading triples and BEIR folders, BM25 mining, batches, metrics, whole runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import kdforge
from kdforge.engine.collate import Collator
from kdforge.engine.teacher_source import TeacherSource
from kdforge.errors import DataError, ModelError
from kdforge.evaluate.metrics import mrr_at_k, ndcg_at_k
from kdforge.models import load_model
from kdforge.recipe import TaskSpec, load_recipe, validate_recipe
from kdforge.recipe.schema import DataSource
from kdforge.tasks import TASKS
from kdforge.tasks.ranking import BM25, beir_candidates, beir_triples, pair_segments
from tests.conftest import SHARED_DATA, needs_shared_data

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "scifact-ranking.yaml"


def task(name: str = "ranking"):
    return TASKS.get(name)(TaskSpec(name=name))


def src(path, **extra) -> DataSource:
    return DataSource.model_validate({"path": str(path), **extra})


def ranking_recipe(teacher: Path, student: Path, data: Path, methods: list[dict], **training) -> dict:
    return {
        "name": "tiny-ranking",
        "teacher": str(teacher),
        "student": str(student),
        "task": {"name": "ranking"},
        "data": {"train": [str(data / "train.jsonl")], "eval": str(data / "dev.jsonl")},
        "methods": methods,
        "training": {"batch_size": 8, "lr": 1e-3, "max_steps": 6, "log_every": 1, **training},
        "output": {"benchmark": False},
    }


# ----- metrics ----------------------------------------------------------------------------
def test_mrr_and_ndcg_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    relevance = [0, 1, 0, 1, 0]  # relevant at ranks 2 and 4
    assert mrr_at_k(scores, relevance, 10) == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(scores, relevance, 10) == pytest.approx(dcg / ideal)
    # the cutoff: with k = 1 nothing relevant is retrieved
    assert mrr_at_k(scores, relevance, 1) == 0.0 and ndcg_at_k(scores, relevance, 1) == 0.0
    # a perfect ranking, and graded relevance (linear gain)
    assert ndcg_at_k([3, 2, 1], [2, 1, 0]) == pytest.approx(1.0)
    assert ndcg_at_k([1, 2, 3], [2, 1, 0]) == pytest.approx((1 / math.log2(3) + 2 / 2) / (2 + 1 / math.log2(3)))
    # ties keep the list order; no relevant candidate scores 0
    assert mrr_at_k([1.0, 1.0], [0, 1]) == pytest.approx(0.5)
    assert ndcg_at_k([1.0, 0.0], [0, 0]) == 0.0


def test_bm25_by_hand():
    docs = ["apple banana", "apple apple cherry", "banana"]
    bm25 = BM25(docs, k1=1.2, b=0.75)
    avgdl = (2 + 3 + 1) / 3

    def term(tf, df, dl):
        idf = math.log(1 + (3 - df + 0.5) / (df + 0.5))
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))

    scores = bm25.scores(["Apple cherry, apple!"])[0]  # case and repeats do not matter
    assert scores[0] == pytest.approx(term(1, 2, 2), rel=1e-5)
    assert scores[1] == pytest.approx(term(2, 2, 3) + term(1, 1, 3), rel=1e-5)
    assert scores[2] == 0.0
    _, order = next(bm25.ranked(["banana"]))
    assert order[:2].tolist() == [2, 0]  # the shorter document first


# ----- reading data -------------------------------------------------------------------------
def test_train_dataset_from_jsonl_keeps_the_fewest_negatives(ranking_dir, tmp_path):
    rows = [json.loads(line) for line in (ranking_dir / "train.jsonl").read_text().splitlines()]
    rows[0]["negatives"] = rows[0]["negatives"][:2]
    rows[1]["negatives"] = rows[1]["negatives"][0]  # one negative as a plain string
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    ds = task().train_dataset([src(path)])
    assert ds.column_names == ["text", "passages", "index"]
    assert ds["text"][0] == rows[0]["query"]
    assert ds["passages"][0] == [rows[0]["positive"], rows[0]["negatives"][0]]  # positive first; 1 negative kept
    assert ds["passages"][1] == [rows[1]["positive"], rows[1]["negatives"]]
    assert ds["index"] == [0, 1, 2, 3]


def test_triples_tsv_with_and_without_header(ranking_dir, tmp_path):
    headerless = task().train_dataset([src(ranking_dir / "triples.tsv")])
    assert len(headerless) == 8  # the first line is a triple, not a header
    first = (ranking_dir / "triples.tsv").read_text().splitlines()[0].split("\t")
    assert headerless["text"][0] == first[0] and headerless["passages"][0] == first[1:]
    with_header = tmp_path / "with_header.tsv"
    with_header.write_text("query\tpositive\tnegative\n" + (ranking_dir / "triples.tsv").read_text())
    assert task().train_dataset([src(with_header)])["passages"] == headerless["passages"]


def test_missing_column_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"query": "a dog", "positive": "a dog sees"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl: ranking data needs the columns .* missing negatives") as err:
        task().train_dataset([src(path)])
    assert "\n" not in str(err.value)
    path.write_text(json.dumps({"question": "a dog", "positive": "x", "negatives": ["y"]}) + "\n")
    with pytest.raises(DataError, match=r"missing query \(columns: question, positive, negatives\)"):
        task().train_dataset([src(path)])


def test_eval_from_triples_groups_candidates_per_query(ranking_dir, tmp_path):
    path = tmp_path / "eval.jsonl"
    rows = [
        {"query": "q1", "positive": "a", "negatives": ["b", "c"]},
        {"query": "q1", "positive": "b", "negatives": ["d"]},
        {"query": "q2", "positive": "e", "negatives": ["f"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = task().load_eval(src(path), "dev")
    assert ds["text"] == ["q1", "q2"]
    assert ds["candidates"] == [["a", "b", "c", "d"], ["e", "f"]]
    assert ds["relevance"] == [[1, 1, 0, 0], [1, 0]]  # a later row may mark an earlier negative relevant
    assert task().is_labelled(ds)


def test_beir_folder_mines_bm25_negatives_and_candidate_lists(ranking_dir):
    folder = ranking_dir / "beir"
    docs = [json.loads(line)["text"] for line in (folder / "corpus.jsonl").read_text().splitlines()]
    triples = beir_triples(src(folder), "train", negatives=3)
    assert len(triples) == 8 and all(len(t["negatives"]) == 3 for t in triples)
    for i, row in enumerate(triples):
        assert row["positive"] == docs[i] and docs[i] not in row["negatives"]
    assert triples == beir_triples(src(folder), "train", negatives=3)  # reproducible
    ds = task().train_dataset([src(folder)])
    assert len(ds) == 8 and {len(p) for p in ds["passages"]} == {5}  # positive + TRAIN_NEGATIVES

    lists = beir_candidates(src(folder, split="test"), "dev", size=6)
    assert len(lists["text"]) == 4
    for i, (candidates, relevance) in enumerate(zip(lists["candidates"], lists["relevance"], strict=True)):
        assert len(candidates) == 6 and sum(relevance) == 1
        assert candidates[relevance.index(1)] == docs[8 + i]
    assert len(task().load_eval(src(folder, split="test"), "dev")["candidates"][0]) == 30
    assert len(task().train_dataset([src(folder, limit=3)])) == 3  # limit: queries


def test_beir_missing_split_names_the_available_ones(ranking_dir):
    with pytest.raises(DataError, match=r"no qrels/dev.tsv \(splits: test, train\); set 'split'"):
        task().load_eval(src(ranking_dir / "beir"), "dev")


@pytest.mark.shared_data
def test_scifact_triples_and_candidates():
    folder = needs_shared_data("beir_scifact")
    triples = beir_triples(src(folder), "train")
    assert len(triples) == 919 and all(len(t["negatives"]) == 4 for t in triples)
    lists = beir_candidates(src(folder, split="test", limit=50), "dev")
    assert len(lists["text"]) == 50 and {len(c) for c in lists["candidates"]} == {30}
    # BM25's own order of the lists: close to BEIR's BM25 nDCG@10 on SciFact (66.5)
    ndcg = np.mean([ndcg_at_k(-np.arange(30), r) for r in lists["relevance"]])
    assert 0.5 < ndcg < 0.8


# ----- batches ------------------------------------------------------------------------------
def test_collate_lays_out_queries_passages_and_pairs(cross_encoder_dir, embedding_teacher_dir, ranking_dir):
    teacher, student = load_model(str(cross_encoder_dir)), load_model(str(embedding_teacher_dir))
    t = task()
    ds = t.train_dataset([src(ranking_dir / "train.jsonl")])
    rows = [ds[i] for i in (5, 2, 9)]
    batch = Collator(student, [teacher], task=t)(rows)
    assert batch.student_inputs["input_ids"].size(0) == 3
    assert batch.candidate_inputs["input_ids"].size(0) == 12
    assert batch.teacher_inputs[0]["input_ids"].size(0) == 12
    assert batch.teacher_index.tolist() == [20, 21, 22, 23, 8, 9, 10, 11, 36, 37, 38, 39]
    assert "special_tokens_mask" not in batch.student_inputs and "special_tokens_mask" not in batch.teacher_inputs[0]
    # pair 5 = query of row 2 with its second passage: its segments hold exactly those tokens
    segments, ids = batch.extra["teacher0_segments"][5], batch.teacher_inputs[0]["input_ids"][5]
    tokenizer = teacher.tokenizer
    assert tokenizer.convert_ids_to_tokens(ids[segments == 1]) == tokenizer.tokenize(rows[1]["text"])
    assert tokenizer.convert_ids_to_tokens(ids[segments == 2]) == tokenizer.tokenize(rows[1]["passages"][1])
    query_ids = batch.student_inputs["input_ids"][1][batch.extra["query_tokens"][1]]
    assert tokenizer.convert_ids_to_tokens(query_ids) == tokenizer.tokenize(rows[1]["text"])


def test_teacher_scores_are_cached_per_query_passage_pair(cross_encoder_dir, embedding_teacher_dir, ranking_dir):
    teacher, student = load_model(str(cross_encoder_dir)), load_model(str(embedding_teacher_dir))
    t = task()
    ds = t.train_dataset([src(ranking_dir / "train.jsonl")])
    collate = Collator(student, [teacher], task=t)
    source = TeacherSource(teacher, frozenset({"logits"}), cache=True)
    first = source(collate([ds[i] for i in (0, 1, 2)]))
    again = source(collate([ds[i] for i in (2, 0)]))  # other batches, other padding: pairs from memory
    assert (source.misses, source.hits) == (1, 1)
    assert torch.equal(again.logits, torch.cat([first.logits[8:12], first.logits[0:4]]))


def test_pair_segments_without_token_types():
    # RoBERTa's layout: <s> q q </s></s> p </s> <pad>
    encoded = {
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]]),
        "special_tokens_mask": torch.tensor([[1, 0, 0, 1, 1, 0, 1, 1]]),
    }
    assert pair_segments(encoded).tolist() == [[0, 1, 1, 0, 0, 2, 0, 0]]


# ----- evaluation and whole runs ------------------------------------------------------------
def test_evaluate_scores_student_and_teacher(cross_encoder_dir, embedding_teacher_dir, ranking_dir):
    t = task()
    ds = t.load_eval(src(ranking_dir / "dev.jsonl"), "dev")
    for model in (load_model(str(cross_encoder_dir)), load_model(str(embedding_teacher_dir))):
        metrics = t.evaluate(model, ds, "dev.jsonl")
        assert set(metrics) == {"mrr@10", "ndcg@10"}
        assert all(0 < v <= 100 for v in metrics.values())


def test_teacher_that_is_not_a_cross_encoder_is_one_clear_error(embedding_teacher_dir, ranking_dir, tmp_path):
    recipe = ranking_recipe(embedding_teacher_dir, embedding_teacher_dir, ranking_dir, [{"name": "margin_mse"}])
    with pytest.raises(ModelError, match=r"is not a cross-encoder \(no classifier\); ranking needs") as err:
        kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert "\n" not in str(err.value)


def test_ranking_recipe_runs_end_to_end(cross_encoder_dir, embedding_teacher_dir, ranking_dir, tmp_path):
    methods = [{"name": "margin_mse"}, {"name": "kl_listwise", "weight": 0.5}, {"name": "virt", "weight": 0.1}]
    recipe = ranking_recipe(cross_encoder_dir, embedding_teacher_dir, ranking_dir, methods)
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    assert results["primary_metric"] == "ndcg@10"
    for model in ("student", "teacher"):
        assert set(results["metrics"][model]["eval"]) == {"mrr@10", "ndcg@10"}
    assert set(results["agreement"]) == {"score_spearman", "top1_agreement"}
    assert results["training"]["steps"] == 6 and math.isfinite(results["training"]["final_loss"])
    assert "sentence-transformers" in results["exports"]
    student = load_model(str(tmp_path / "student"))
    assert student.kind == "embedding" and student.encode(["a dog sees the ball"]).shape[0] == 1


def test_finetune_a_cross_encoder_then_distil_it(embedding_teacher_dir, ranking_dir, tmp_path):
    """A 'reranking' finetune stage makes the cross-encoder teacher of the 'ranking' stage (BEIR data)."""
    beir = str(ranking_dir / "beir")
    recipe = {
        "name": "rank-chain",
        "data": {"train": [beir], "eval": {"path": beir, "split": "test"}},
        "training": {"batch_size": 8, "lr": 1e-3, "max_steps": 4, "log_every": 1},
        "output": {"benchmark": False, "export": False},
        "stages": [
            {
                "name": "cross-encoder",
                "kind": "finetune",
                "task": {"name": "reranking"},
                "student": str(embedding_teacher_dir),
            },
            {
                "name": "bi-encoder",
                "teacher": "stage:cross-encoder",
                "student": str(embedding_teacher_dir),
                "task": {"name": "ranking"},
                "methods": [{"name": "margin_mse"}],
            },
        ],
    }
    results = kdforge.run(validate_recipe(recipe), tmp_path, show=False)
    first, second = results["stages"]
    assert 0 <= first["metrics"]["student"]["eval"]["ndcg@10"] <= 100  # the cross-encoder, by its own scores
    assert load_model(str(tmp_path / "stages" / "cross-encoder" / "model")).num_labels == 2
    assert set(second["metrics"]["teacher"]["eval"]) == {"mrr@10", "ndcg@10"}


def test_scifact_recipe_validates(monkeypatch):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    monkeypatch.setenv("KDFORGE_DATA", str(SHARED_DATA))
    recipe = load_recipe(RECIPE)
    teacher_stage, student_stage = recipe.stages
    assert teacher_stage.kind == "finetune" and teacher_stage.task.name == "reranking"
    assert student_stage.task.name == "ranking" and student_stage.teacher.model == "stage:cross-encoder"
    assert {m.name for m in student_stage.methods} == {"margin_mse", "kl_listwise", "virt"}
