"""Model size: parameter count and the bytes its weights take on disk (safetensors)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kdforge.models.text_model import TextModel


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*.safetensors"))


def model_size(model: TextModel) -> dict[str, float]:
    """Parameters and on-disk MB of the model's weights as ``save_pretrained`` writes them.

    A teacher whose weights are packed to int8 or offloaded cannot be written that way; its
    figure is what the weights take as placed.
    """
    placement = model.placement
    if placement is not None and (placement.offloaded or placement.dtype == "int8"):
        return {"parameters": model.num_parameters(), "disk_mb": placement.weight_bytes / 2**20}
    with tempfile.TemporaryDirectory() as tmp:
        model.hf.save_pretrained(tmp, safe_serialization=True)
        size = weights_bytes(Path(tmp))
    return {"parameters": model.num_parameters(), "disk_mb": size / 2**20}
