"""Resume a generative knowledge stage at RetriKT's step boundaries.

Prompt tuning (step 1) and PPO (step 2) on a large causal LM take hours; a stage killed during
step 2 or while writing its samples reruns from the soft prompt the last finished step left, not
from scratch. A checkpoint is that prompt (safetensors, never unpickled) and what the step
reported (JSON). The prompt is written first and the JSON renamed into place last, so a kill
while saving leaves no half checkpoint. Both files carry the stage's fingerprint: a changed
recipe starts over instead of resuming from another recipe's prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from kdforge.errors import CheckpointError
from kdforge.files import atomic_path

#: The step boundaries, in order: after prompt tuning, after PPO.
STEPS = ("prompt-tuned", "ppo-refined")


@dataclass(frozen=True)
class PromptCheckpoints:
    """The soft prompt after each finished step, in ``folder``, for the stage with ``fingerprint``."""

    folder: Path
    fingerprint: str

    def _paths(self, step: str) -> tuple[Path, Path]:
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; the steps are {STEPS}")
        return self.folder / f"{step}.safetensors", self.folder / f"{step}.json"

    def load(self, step: str) -> tuple[torch.Tensor, dict] | None:
        """The prompt and report ``step`` saved for this fingerprint, or None if it has none."""
        tensors, meta = self._paths(step)
        if not (tensors.is_file() and meta.is_file()):
            return None
        try:
            saved = json.loads(meta.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{meta}: not valid JSON ({err}); delete it to redo this step") from err
        if saved.get("fingerprint") != self.fingerprint:
            return None
        try:
            with safe_open(str(tensors), framework="pt") as file:
                if (file.metadata() or {}).get("fingerprint") != self.fingerprint:
                    return None  # killed between the two files while another recipe saved this step
                prompt = file.get_tensor("prompt")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{tensors}: damaged prompt checkpoint ({err}); delete it to redo this step") from err
        return prompt, saved["report"]

    def latest(self) -> tuple[str, torch.Tensor, dict] | None:
        """The last finished step with its prompt and report, or None if no step has finished."""
        for step in reversed(STEPS):
            found = self.load(step)
            if found is not None:
                return step, *found
        return None

    def save(self, step: str, prompt: torch.Tensor, report: dict) -> None:
        tensors, meta = self._paths(step)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(tensors) as tmp:
                save_file(
                    {"prompt": prompt.detach().float().cpu().contiguous()}, str(tmp), {"fingerprint": self.fingerprint}
                )
            with atomic_path(meta) as tmp:
                tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "report": report}, indent=1))
        except OSError as err:
            raise CheckpointError(
                f"cannot write the {step} prompt to {self.folder}: {err.strerror or err}; free space or fix permissions"
            ) from err
