"""COPA read as sentence-pair classification, from its XML release and from SuperGLUE's JSONL."""

from __future__ import annotations

import json

import pytest

from kdforge.errors import DataError
from kdforge.recipe.schema import DataSource
from kdforge.tasks.data import load_source

XML = """<?xml version="1.0" encoding="UTF-8"?>
<copa-corpus version="1.0">
  <item id="1" asks-for="cause" most-plausible-alternative="1">
    <p>My body cast a shadow.</p><a1>The sun was rising.</a1><a2>The grass was cut.</a2>
  </item>
  <item id="2" asks-for="effect" most-plausible-alternative="2">
    <p>The glass fell.</p><a1>It flew.</a1><a2>It broke.</a2>
  </item>
  <item id="3" asks-for="effect" most-plausible-alternative="1">
    <p>I was cold.</p><a1>I put on a coat.</a1><a2>I ate.</a2>
  </item>
</copa-corpus>
"""


def test_xml_items_become_pairs_with_swapped_training_copies(tmp_path):
    (tmp_path / "copa-dev.xml").write_text(XML)
    train = load_source(DataSource(path=str(tmp_path / "copa-dev.xml"), limit=2), "train")
    assert len(train) == 4  # limit counts items; each training item also appears swapped
    assert train[0] == {
        "text": "My body cast a shadow. What was the cause?",
        "text_pair": "The sun was rising. Or: The grass was cut.",
        "label": "0",
    }
    assert train[1]["text_pair"] == "The grass was cut. Or: The sun was rising." and train[1]["label"] == "1"
    assert train[2]["label"] == "1" and train[3]["label"] == "0"
    dev = load_source(DataSource(path=str(tmp_path / "copa-dev.xml")), "dev")
    assert len(dev) == 3 and dev[2]["label"] == "0"  # evaluation splits are not doubled


def test_superglue_jsonl(tmp_path):
    row = {
        "premise": "The man turned on the faucet.",
        "choice1": "The toilet filled.",
        "choice2": "Water flowed.",
        "question": "effect",
        "label": 1,
        "idx": 0,
    }
    (tmp_path / "val.jsonl").write_text(json.dumps(row) + "\n")
    dev = load_source(DataSource(path=str(tmp_path / "val.jsonl"), format="copa"), "dev")
    assert dev[0] == {
        "text": "The man turned on the faucet. What was the effect?",
        "text_pair": "The toilet filled. Or: Water flowed.",
        "label": "1",
    }


def test_other_jsonl_is_refused_as_copa(tmp_path):
    (tmp_path / "cb.jsonl").write_text(json.dumps({"premise": "a", "hypothesis": "b", "label": "neutral"}) + "\n")
    with pytest.raises(DataError, match="format copa needs premise, choice1, choice2, question"):
        load_source(DataSource(path=str(tmp_path / "cb.jsonl"), format="copa"), "dev")


def test_candidates_layout_pairs_the_two_candidate_sentences(tmp_path):
    (tmp_path / "copa-dev.xml").write_text(XML)
    source = DataSource(path=str(tmp_path / "copa-dev.xml"), format="copa_candidates")
    train = load_source(source, "train")
    assert train[0] == {
        "text": "My body cast a shadow because the sun was rising.",
        "text_pair": "My body cast a shadow because the grass was cut.",
        "label": "0",
    }
    assert (train[1]["text"], train[1]["text_pair"], train[1]["label"]) == (
        train[0]["text_pair"],
        train[0]["text"],
        "1",
    )  # the swapped copy
    dev = load_source(source, "dev")
    assert dev[1]["text_pair"] == "The glass fell so it broke." and dev[1]["label"] == "1"
    assert dev[2]["text"] == "I was cold so I put on a coat."  # "I" keeps its case
