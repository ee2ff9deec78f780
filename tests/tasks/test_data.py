"""load_source: every layout becomes text [, text_pair, label (str), score (float)]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdforge.errors import DataError
from kdforge.recipe.schema import DataSource
from kdforge.tasks.data import load_source
from tests.conftest import needs_shared_data


def source(path: Path, **fields) -> DataSource:
    return DataSource.model_validate({"path": str(path), **fields})


def load(path: Path, split: str | None = None, **fields):
    return load_source(source(path, **fields), split)


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def data_error(path: Path, split: str | None = None, **fields) -> str:
    with pytest.raises(DataError) as info:
        load(path, split, **fields)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- layouts

STSB_ROWS = (
    'main-captions\tMSRvid\t2012test\t0001\t5.000\tA man is playing a "flute.\tA man plays the flute.\n'
    'main-news\theadlines\t2013\t0002\t0.250\tStocks fall.\tIt rains "hard" today.\tsource-a\tsource-b\n'
    "main-forums\tdeft-forum\t2014\t0003\t3\tI don't think so.\tI do not think so.\n"
)


def test_original_stsb_layout(tmp_path):
    ds = load(write(tmp_path / "sts-dev.csv", STSB_ROWS))
    assert set(ds.column_names) == {"text", "text_pair", "score"}
    assert ds["text"] == ['A man is playing a "flute.', "Stocks fall.", "I don't think so."]
    assert ds["text_pair"] == ["A man plays the flute.", 'It rains "hard" today.', "I do not think so."]
    assert ds["score"] == [5.0, 0.25, 3.0]
    assert all(isinstance(s, float) for s in ds["score"])


def test_stsb_layout_forced_by_format(tmp_path):
    ds = load(write(tmp_path / "pairs.dat", STSB_ROWS), format="stsb")
    assert len(ds) == 3 and ds["score"][1] == 0.25


def test_glue_single_sentence_tsv(tmp_path):
    path = write(tmp_path / "dev.tsv", 'sentence\tlabel\nit \'s a "charming" film .\t1\nboring .\t0\n')
    ds = load(path)
    assert set(ds.column_names) == {"text", "label"}
    assert ds["text"] == ['it \'s a "charming" film .', "boring ."]
    assert ds["label"] == ["1", "0"]


def test_glue_pair_tsv(tmp_path):
    path = write(
        tmp_path / "dev.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat was sitting.\tentailment\n"
        "1\tDogs bark.\tCats fly.\tnot_entailment\n",
    )
    ds = load(path)
    assert ds["text"] == ["A cat sat.", "Dogs bark."]
    assert ds["text_pair"] == ["A cat was sitting.", "Cats fly."]
    assert ds["label"] == ["entailment", "not_entailment"]


def test_glue_stsb_tsv_has_float_scores(tmp_path):
    path = write(
        tmp_path / "dev.tsv",
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat.\tA man wearing a hat.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA girl sings.\tA boy runs.\t0.5\n",
    )
    ds = load(path)
    assert ds["text"] == ["A man with a hard hat.", "A girl sings."]
    assert ds["text_pair"] == ["A man wearing a hat.", "A boy runs."]
    assert ds["score"] == [5.0, 0.5]


def test_mrpc_layout_with_bom(tmp_path):
    path = write(
        tmp_path / "dev.tsv",
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1355540\t1355592\tHe said "the food was good.\tThe food was good, he said.\n'
        "0\t2029631\t2029565\tShares rose.\tShares fell.\n",
        bom=True,
    )
    ds = load(path)
    assert set(ds.column_names) == {"text", "text_pair", "label"}
    assert ds["text"] == ['He said "the food was good.', "Shares rose."]
    assert ds["text_pair"] == ["The food was good, he said.", "Shares fell."]
    assert ds["label"] == ["1", "0"]


def test_qnli_question_sentence(tmp_path):
    """QNLI: the question is the text, the answer sentence becomes text_pair."""
    path = write(
        tmp_path / "dev.tsv",
        "index\tquestion\tsentence\tlabel\n"
        "0\tWhat came into force after the new constitution?\tThe Senate came into force.\tentailment\n"
        "1\tWho wrote it?\tIt rained all day.\tnot_entailment\n",
    )
    ds = load(path)
    assert ds["text"] == ["What came into force after the new constitution?", "Who wrote it?"]
    assert ds["text_pair"] == ["The Senate came into force.", "It rained all day."]
    assert ds["label"] == ["entailment", "not_entailment"]


def test_quora_question_pairs(tmp_path):
    path = write(
        tmp_path / "dev.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\tlabel\n0\t1\t2\tHow?\tWhy?\t0\t0\n"
    )
    ds = load(path)
    assert ds["text"] == ["How?"] and ds["text_pair"] == ["Why?"] and ds["label"] == ["0"]


def test_superglue_jsonl(tmp_path):
    rows = [
        {"premise": "It rained.", "hypothesis": "The ground is wet.", "label": "entailment", "idx": 0},
        {"premise": "He left.", "hypothesis": "He stayed.", "label": "contradiction", "idx": 1},
    ]
    path = write(tmp_path / "val.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = load(path)
    assert set(ds.column_names) == {"text", "text_pair", "label"}
    assert ds["text"] == ["It rained.", "He left."]
    assert ds["text_pair"] == ["The ground is wet.", "He stayed."]
    assert ds["label"] == ["entailment", "contradiction"]


def test_jsonl_integer_labels_become_strings(tmp_path):
    rows = [{"sentence": "a", "label": 1}, {"sentence": "b", "label": 0}]
    path = write(tmp_path / "x.jsonl", "\n".join(json.dumps(r) for r in rows))
    assert load(path)["label"] == ["1", "0"]


def test_plain_text_one_sentence_per_line(tmp_path):
    path = write(tmp_path / "s.txt", 'first sentence .\n\n  second one  \nthird, with "quotes\n')
    ds = load(path)
    assert ds.column_names == ["text"]
    assert ds["text"] == ["first sentence .", "second one", 'third, with "quotes']


def test_generic_csv_with_named_columns(tmp_path):
    path = write(tmp_path / "reviews.csv", 'review,stars\n"Great, loved it",5\nMeh,2\n')
    ds = load(path, text="review", label="stars")
    assert set(ds.column_names) == {"text", "label"}
    assert ds["text"] == ["Great, loved it", "Meh"]
    assert ds["label"] == ["5", "2"]


def test_generic_csv_with_named_pair_and_score(tmp_path):
    path = write(tmp_path / "pairs.csv", "left,right,sim\na b,c d,0.5\ne,f,4\n")
    ds = load(path, text="left", text_pair="right", score="sim")
    assert ds["text"] == ["a b", "e"] and ds["text_pair"] == ["c d", "f"]
    assert ds["score"] == [0.5, 4.0]


def test_named_text_column_overrides_detection(tmp_path):
    path = write(tmp_path / "x.tsv", "sentence\tother\tlabel\nA\tB\t1\n")
    ds = load(path, text="other")
    assert ds["text"] == ["B"] and ds["label"] == ["1"]


def test_limit(tmp_path):
    path = write(tmp_path / "s.txt", "\n".join(f"sentence {i}" for i in range(10)) + "\n")
    ds = load(path, limit=3)
    assert ds["text"] == ["sentence 0", "sentence 1", "sentence 2"]
    tsv = write(tmp_path / "x.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(10)))
    assert len(load(tsv, limit=4)) == 4


def test_empty_label_is_left_out(tmp_path):
    path = write(tmp_path / "test.tsv", "sentence\tlabel\na\t\nb\t\n")
    ds = load(path)
    assert "label" not in ds.column_names or ds["label"] == [None, None]


# --------------------------------------------------------------------------- folders and splits


def test_folder_split_dev_picks_dev_tsv(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\ntrain row\t1\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\ndev row\t0\n")
    write(tmp_path / "test.tsv", "sentence\nunlabelled\n")
    assert load(tmp_path, "dev")["text"] == ["dev row"]
    assert load(tmp_path)["text"] == ["train row"]  # no split means train
    assert load(tmp_path, "test")["text"] == ["unlabelled"]


def test_source_split_wins_over_argument(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\ntrain row\t1\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\ndev row\t0\n")
    assert load_source(source(tmp_path, split="dev"), "train")["text"] == ["dev row"]


def test_validation_alias(tmp_path):
    write(tmp_path / "validation.jsonl", json.dumps({"premise": "p", "hypothesis": "h", "label": "x"}) + "\n")
    assert load(tmp_path, "dev")["text"] == ["p"]
    assert load(tmp_path, "val")["text"] == ["p"]


def test_dev_file_for_validation_split(tmp_path):
    write(tmp_path / "dev.tsv", "sentence\tlabel\ndev row\t0\n")
    assert load(tmp_path, "validation")["text"] == ["dev row"]


def test_val_jsonl_for_dev_split(tmp_path):
    write(tmp_path / "val.jsonl", json.dumps({"premise": "p", "hypothesis": "h", "label": "neutral"}) + "\n")
    assert load(tmp_path, "dev")["label"] == ["neutral"]


def test_sts_benchmark_folder(tmp_path):
    write(tmp_path / "sts-train.csv", STSB_ROWS)
    write(tmp_path / "sts-test.csv", STSB_ROWS.splitlines(keepends=True)[0])
    ds = load(tmp_path, "test")
    assert ds["score"] == [5.0]
    assert len(load(tmp_path, "train")) == 3


# --------------------------------------------------------------------------- errors


def test_missing_named_column_lists_columns(tmp_path):
    path = write(tmp_path / "x.csv", "review,stars\nok,1\n")
    message = data_error(path, text="body")
    assert "'body'" in message
    assert "review" in message and "stars" in message
    assert str(path) in message


def test_missing_named_label_column(tmp_path):
    path = write(tmp_path / "x.tsv", "sentence\tlabel\na\t1\n")
    message = data_error(path, label="gold")
    assert "'gold'" in message and "sentence, label" in message


def test_no_text_column(tmp_path):
    path = write(tmp_path / "x.csv", "foo,bar\n1,2\n")
    message = data_error(path)
    assert "text" in message
    assert "foo" in message and "bar" in message
    assert "set 'text'" in message


def test_bad_json_line_has_line_number(tmp_path):
    path = write(tmp_path / "x.jsonl", json.dumps({"sentence": "a"}) + "\n\n" + '{"sentence": "b",\n')
    message = data_error(path)
    assert f"{path}:3:" in message
    assert "not valid JSON" in message


def test_stsb_row_with_too_few_fields(tmp_path):
    path = write(tmp_path / "sts-dev.csv", STSB_ROWS + "main-captions\tMSRvid\t2012test\t0004\t1.0\tonly one\n")
    message = data_error(path)
    assert f"{path}:4:" in message
    assert "7" in message and "got 6" in message


def test_folder_without_file_for_split_lists_files(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\na\t1\n")
    write(tmp_path / "notes.md", "hello\n")
    message = data_error(tmp_path, "test")
    assert "'test'" in message
    assert "notes.md" in message and "train.tsv" in message
    assert "path" in message


def test_non_numeric_score(tmp_path):
    path = write(tmp_path / "x.tsv", "sentence1\tsentence2\tscore\na\tb\t1.5\nc\td\thigh\n")
    message = data_error(path)
    assert "row 2" in message and "'high'" in message and "not a number" in message


def test_non_numeric_score_in_stsb_layout(tmp_path):
    """A bad score in an STS-B file is a DataError naming the line, not a bare ValueError."""
    path = write(tmp_path / "sts-dev.csv", STSB_ROWS + "main-captions\tMSRvid\t2012test\t0004\tn/a\tA.\tB.\n")
    message = data_error(path)
    assert str(path) in message and "n/a" in message


def test_empty_file(tmp_path):
    path = write(tmp_path / "empty.txt", "\n\n")
    assert "no examples" in data_error(path)


def test_missing_text_value(tmp_path):
    path = write(tmp_path / "x.tsv", "sentence1\tsentence2\tlabel\na\tb\t1\nc\n")
    message = data_error(path)
    assert "row 2" in message and "'sentence2'" in message


# --------------------------------------------------------------------------- shared data


def test_shared_stsb_test():
    folder = needs_shared_data("stsb")
    ds = load(folder, "test")
    assert len(ds) == 1379
    assert {"text", "text_pair", "score"} <= set(ds.column_names)
    assert all(0.0 <= s <= 5.0 for s in ds["score"])
    assert len(load(folder / "sts-dev.csv")) == 1500


def test_shared_glue_sst2_dev():
    folder = needs_shared_data("glue_sst2")
    ds = load(folder, "dev")
    assert len(ds) == 872
    assert "text_pair" not in ds.column_names
    assert set(ds["label"]) == {"0", "1"}


def test_shared_glue_mrpc_dev():
    folder = needs_shared_data("glue_mrpc")
    ds = load(folder, "dev")
    assert len(ds) == 408
    assert {"text", "text_pair", "label"} <= set(ds.column_names)
    assert set(ds["label"]) == {"0", "1"}
    assert not ds["text"][0].startswith("\ufeff")


def test_shared_glue_rte_dev():
    folder = needs_shared_data("glue_rte")
    ds = load(folder, "dev")
    assert len(ds) == 277
    assert {"text", "text_pair"} <= set(ds.column_names)
    assert set(ds["label"]) == {"entailment", "not_entailment"}


def test_shared_superglue_cb_val():
    folder = needs_shared_data("superglue_cb")
    ds = load(folder, "val")
    assert len(ds) == 56
    assert {"text", "text_pair"} <= set(ds.column_names)
    assert set(ds["label"]) <= {"entailment", "contradiction", "neutral"}
    assert len(load(folder, "dev")) == 56  # dev is an alias of val


def test_shared_glue_qnli_dev_keeps_the_question():
    folder = needs_shared_data("glue_qnli")
    ds = load(folder, "dev")
    assert len(ds) == 5463
    assert ds["text"][0] == "What came into force after the new constitution was herald?"
    assert ds["text_pair"][0].startswith("As of that day, the new constitution")
