"""The generative knowledge source as a recipe stage: a tiny causal LM, trained first on a toy task,
tunes a soft prompt, refines it with PPO, writes samples for each label and labels them itself."""

from __future__ import annotations

import pytest

import kdforge
from kdforge.recipe import validate_recipe
from kdforge.store.samples import open_samples
from tests.knowledge.test_generative import LABELS, labelled, train_toy_lm


@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory):
    lm, tokenizer = train_toy_lm()
    folder = tmp_path_factory.mktemp("lm") / "toy-lm"
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_train(folder, rows: int) -> str:
    """A labelled toy training file (label 0 = negative, 1 = positive); its path."""
    texts, labels = labelled(rows, seed=7)
    path = folder / "train.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)))
    return str(path)


def knowledge_stage(teacher, **knowledge) -> dict:
    """A generative knowledge stage on the toy causal LM."""
    return {
        "name": "knowledge",
        "kind": "knowledge",
        "teacher": str(teacher),
        "knowledge": {"source": "generative", "label_words": LABELS, "prompt_tokens": 4, **knowledge},
    }


def test_knowledge_stage_writes_a_labelled_store_from_generation(toy_teacher, classifier_teacher_dir, tmp_path):
    train = write_train(tmp_path, 16)
    recipe = validate_recipe(
        {
            "name": "toy-generative",
            "task": {"name": "classification", "labels": ["0", "1"]},
            "data": {"train": train, "eval": train},
            "training": {"batch_size": 8, "max_steps": 6, "lr": 1e-3},
            "stages": [
                knowledge_stage(toy_teacher, per_label=24, prompt_epochs=2, ppo_steps=4, max_new_tokens=12),
                {  # a student learns to retrieve from what the causal LM wrote; nothing reads the LM itself
                    "name": "student",
                    "teacher": str(toy_teacher),
                    "student": str(classifier_teacher_dir),
                    "data": {"train": "stage:knowledge"},
                    "methods": [{"name": "retrikt", "k": 4}],
                },
            ],
            "output": {"benchmark": False},
        }
    )
    results = kdforge.run(recipe, tmp_path / "out", show=False)
    summary = results["stages"][0]
    store = open_samples(tmp_path / "out" / "stages" / "knowledge" / "store")
    assert summary["samples"] == len(store) and 24 <= len(store) <= 48
    assert store.meta["source"] == "generative" and store.pairs is None
    assert set(store.samples["label"]) == {"0", "1"}  # samples for both labels, named as the task names them
    assert (store.sources < 0).all() and len(set(store.sources.tolist())) == len(store)  # each its own source
    # the teacher classifies its own samples as the label they were written for far more often than chance
    assert summary["teacher_agrees_with_intended_label"] > 70
    assert {"reward_after_prompt_tuning", "reward_after_ppo"} <= summary.keys()
    # the student stage: scored on its own (a causal LM is no classifier to compare with), store shipped
    assert results["stages"][1]["metrics"].keys() == {"student"}
    assert (tmp_path / "out" / "student" / "retrieval" / "store" / "index.faiss").is_file()


def test_a_knowledge_stage_killed_while_writing_resumes_from_its_ppo_prompt(toy_teacher, tmp_path, monkeypatch, capsys):
    import kdforge.knowledge.generative as generative
    import kdforge.knowledge.stage as stage

    train = write_train(tmp_path, 8)
    recipe = validate_recipe(
        {
            "name": "toy-generative-resume",
            "task": {"name": "classification", "labels": ["0", "1"]},
            "data": {"train": train, "eval": train},
            "stages": [knowledge_stage(toy_teacher, per_label=8, prompt_epochs=1, ppo_steps=2, max_new_tokens=8)],
            "output": {"benchmark": False},
        }
    )
    with monkeypatch.context() as patch:

        def killed(*args, **kwargs):
            raise KeyboardInterrupt

        patch.setattr(stage, "write_samples", killed)
        with pytest.raises(KeyboardInterrupt):
            kdforge.run(recipe, tmp_path / "out", show=False)
    checkpoints = tmp_path / "out" / "stages" / "knowledge" / "checkpoints"
    assert (checkpoints / "ppo-refined.json").is_file()

    def refused(*args, **kwargs):
        raise AssertionError("PPO ran again")

    monkeypatch.setattr(generative, "ppo_refine", refused)
    capsys.readouterr()
    results = kdforge.run(recipe, tmp_path / "out", show=False)
    assert "resuming RetriKT's knowledge extraction from the ppo-refined prompt" in capsys.readouterr().err
    assert results["stages"][0]["samples"] == len(open_samples(tmp_path / "out" / "stages" / "knowledge" / "store"))
