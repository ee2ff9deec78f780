"""Export as a plain Hugging Face folder (safetensors), loadable without kdforge."""

from __future__ import annotations

import json
from pathlib import Path

from kdforge.models.loading import META_FILE
from kdforge.models.text_model import TextModel


def save_hf(model: TextModel, path: str | Path) -> Path:
    """``save_pretrained`` of model and tokenizer, plus ``kdforge.json`` (pooling, kind)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.hf.save_pretrained(path, safe_serialization=True)
    model.tokenizer.save_pretrained(path)
    meta = {
        "kind": model.kind,
        "pooling": model.pooling,
        "normalize": model.normalize,
        "max_length": model.max_length,
        "teacher_blocks": model.teacher_blocks,
    }
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path
