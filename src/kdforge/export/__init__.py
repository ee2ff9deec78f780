"""Exporters: a trained student as a folder any user can load without kdforge."""

from __future__ import annotations

from pathlib import Path

from kdforge.errors import KdforgeError
from kdforge.export.hf import save_hf
from kdforge.export.sentence_transformers import save_sentence_transformer
from kdforge.models.text_model import TextModel

FORMATS = {"hf": save_hf, "sentence-transformers": save_sentence_transformer}


def default_format(model: TextModel) -> str:
    return "sentence-transformers" if model.kind == "embedding" else "hf"


def export(model: TextModel, path: str | Path, fmt: str | None = None) -> Path:
    fmt = fmt or default_format(model)
    if fmt not in FORMATS:
        raise KdforgeError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    return FORMATS[fmt](model, path)


__all__ = ["FORMATS", "default_format", "export", "save_hf", "save_sentence_transformer"]
