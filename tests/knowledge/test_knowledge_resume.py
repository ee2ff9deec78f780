"""A generative knowledge stage killed midway resumes after its last finished step (prompt tuning,
then PPO) and writes the same samples as a run that was never interrupted."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import kdforge.knowledge.generative as generative
from kdforge.errors import CheckpointError
from kdforge.knowledge import GenerativeSettings, PromptCheckpoints, extract_knowledge
from tests.knowledge.test_generative import LABELS, labelled, train_toy_lm

SETTINGS = GenerativeSettings(
    num_virtual_tokens=4,
    sft_epochs=2,
    ppo_steps=3,
    rollouts_per_step=8,
    per_label=8,
    eval_per_label=8,
    max_new_tokens=8,
    seed=0,
)


@pytest.fixture(scope="module")
def toy_lm():
    torch.set_num_threads(1)
    return train_toy_lm(steps=200)


@pytest.fixture(scope="module")
def train_set():
    return labelled(8, seed=7)


def run(toy_lm, train_set, checkpoints):
    lm, tokenizer = toy_lm
    return extract_knowledge(copy.deepcopy(lm), tokenizer, *train_set, LABELS, SETTINGS, checkpoints)


@pytest.fixture(scope="module")
def uninterrupted(toy_lm, train_set, tmp_path_factory):
    checkpoints = PromptCheckpoints(tmp_path_factory.mktemp("full"), "recipe-a")
    return run(toy_lm, train_set, checkpoints), checkpoints


def tuning_epochs(monkeypatch) -> list[int]:
    """Record the epochs of every prompt-tuning call."""
    calls: list[int] = []
    real = generative.tune_prompt

    def spy(*args, **kwargs):
        calls.append(kwargs["epochs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(generative, "tune_prompt", spy)
    return calls


def refuse_ppo(monkeypatch, error: type[BaseException]) -> None:
    def refused(*args, **kwargs):
        raise error("PPO ran")

    monkeypatch.setattr(generative, "ppo_refine", refused)


def same_knowledge(a, b) -> bool:
    return (
        a.texts == b.texts
        and a.intended == b.intended
        and torch.allclose(a.probs, b.probs)
        and (a.rewards_after_sft, a.rewards_after_ppo) == (b.rewards_after_sft, b.rewards_after_ppo)
        and a.ppo_history == b.ppo_history
    )


def test_each_finished_step_leaves_its_prompt(uninterrupted):
    knowledge, checkpoints = uninterrupted
    step, prompt, report = checkpoints.latest()
    assert step == "ppo-refined" and prompt.shape == (SETTINGS.num_virtual_tokens, 64)
    assert report["after_ppo"] == knowledge.rewards_after_ppo and len(report["history"]) == SETTINGS.ppo_steps
    tuned, tuned_report = checkpoints.load("prompt-tuned")
    assert tuned_report == {"after_sft": knowledge.rewards_after_sft}
    assert not torch.equal(tuned, prompt)  # PPO moved the prompt


def test_a_run_killed_during_ppo_resumes_after_prompt_tuning(uninterrupted, toy_lm, train_set, tmp_path, monkeypatch):
    checkpoints = PromptCheckpoints(tmp_path, "recipe-a")
    with monkeypatch.context() as patch:
        refuse_ppo(patch, KeyboardInterrupt)  # killed at the start of step 2
        with pytest.raises(KeyboardInterrupt):
            run(toy_lm, train_set, checkpoints)
    assert checkpoints.latest()[0] == "prompt-tuned"
    epochs = tuning_epochs(monkeypatch)
    resumed = run(toy_lm, train_set, checkpoints)
    assert epochs == [0]  # step 1 was not redone
    assert same_knowledge(resumed, uninterrupted[0])


def test_a_finished_extraction_reruns_neither_step(uninterrupted, toy_lm, train_set, monkeypatch):
    refuse_ppo(monkeypatch, AssertionError)
    epochs = tuning_epochs(monkeypatch)
    again = run(toy_lm, train_set, uninterrupted[1])
    assert epochs == [0]
    assert same_knowledge(again, uninterrupted[0])


def test_checkpoints_of_another_recipe_are_not_resumed(uninterrupted, toy_lm, train_set, monkeypatch):
    other = PromptCheckpoints(uninterrupted[1].folder, "recipe-b")
    assert other.latest() is None
    epochs = tuning_epochs(monkeypatch)
    with monkeypatch.context() as patch:
        refuse_ppo(patch, KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            run(toy_lm, train_set, other)
    assert epochs == [SETTINGS.sft_epochs]
    # recipe-b's step 1 replaced the prompt; recipe-a must not pick it up as its own
    assert PromptCheckpoints(other.folder, "recipe-a").load("prompt-tuned") is None


def test_a_damaged_prompt_checkpoint_is_a_one_line_error(tmp_path):
    checkpoints = PromptCheckpoints(tmp_path, "recipe-a")
    checkpoints.save("prompt-tuned", torch.zeros(4, 8), {"after_sft": 0.5})
    (tmp_path / "prompt-tuned.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="prompt-tuned.safetensors: damaged prompt checkpoint"):
        checkpoints.latest()
    (tmp_path / "prompt-tuned.json").write_text("{")
    with pytest.raises(CheckpointError, match="prompt-tuned.json: not valid JSON"):
        checkpoints.load("prompt-tuned")


def test_a_prompt_of_another_shape_is_refused(toy_lm, train_set, tmp_path):
    checkpoints = PromptCheckpoints(tmp_path, "recipe-a")
    checkpoints.save("prompt-tuned", torch.zeros(3, 64), {"after_sft": 0.5})
    assert json.loads((tmp_path / "prompt-tuned.json").read_text())["fingerprint"] == "recipe-a"
    with pytest.raises(CheckpointError, match=r"prompt-tuned prompt .* is \(3, 64\), this teacher's is \(4, 64\)"):
        run(toy_lm, train_set, checkpoints)
