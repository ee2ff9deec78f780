"""Export as a plain Hugging Face folder (safetensors), loadable without kdforge."""

from __future__ import annotations

import json
from pathlib import Path

from kdforge.models.loading import META_FILE
from kdforge.models.retrieval import FOLDER as RETRIEVAL_FOLDER
from kdforge.models.text_model import TextModel


def save_hf(model: TextModel, path: str | Path) -> Path:
    """``save_pretrained`` of model and tokenizer, plus ``kdforge.json`` (pooling, kind); a retrieving
    student (RetriKT) also gets ``retrieval/``: its sample store, keys, FAISS index and mixing weight."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.hf.save_pretrained(path, safe_serialization=True)
    model.tokenizer.save_pretrained(path)
    write_meta(model, path)
    if model.retrieval is not None:
        model.retrieval.save(path / RETRIEVAL_FOLDER)
    return path


def write_meta(model: TextModel, path: Path) -> None:
    """``kdforge.json``: how kdforge reads sentences from the folder's model (loading.py reads it back)."""
    meta = {
        "kind": model.kind,
        "pooling": model.pooling,
        "normalize": model.normalize,
        "max_length": model.max_length,
        "teacher_blocks": model.teacher_blocks,
        "special_tokens": model.special_tokens,
    }
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
