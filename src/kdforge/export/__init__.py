"""Exporters: a trained student as a folder any user can load without kdforge."""

from __future__ import annotations

from pathlib import Path

from kdforge.errors import KdforgeError, ModelError
from kdforge.export.hf import save_hf
from kdforge.export.onnx import save_onnx, save_onnx_int8
from kdforge.export.sentence_transformers import save_sentence_transformer
from kdforge.export.static import save_static_table
from kdforge.models.text_model import TextModel

FORMATS = {
    "hf": save_hf,
    "sentence-transformers": save_sentence_transformer,
    "onnx": save_onnx,
    "onnx-int8": save_onnx_int8,
    "static-table": save_static_table,
}


def default_format(model: TextModel) -> str:
    return "sentence-transformers" if model.kind == "embedding" else "hf"


def check_format(fmt: str) -> None:
    """Reject a format no exporter writes, before any model is loaded."""
    if fmt not in FORMATS:
        raise KdforgeError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")


def export(model: TextModel, path: str | Path, fmt: str | None = None) -> Path:
    fmt = fmt or default_format(model)
    check_format(fmt)
    if not isinstance(model, TextModel):  # an OnnxTextModel: its PyTorch weights are gone
        raise ModelError(f"{model.name} is an exported ONNX graph; export from the PyTorch folder it came from")
    if model.retrieval is not None and fmt != "hf":
        raise ModelError(
            f"{model.name or 'the student'} predicts with a retrieval store (RetriKT), which only the hf format "
            f"carries; {fmt} would drop it"
        )
    return FORMATS[fmt](model, path)


__all__ = [
    "FORMATS",
    "check_format",
    "default_format",
    "export",
    "save_hf",
    "save_onnx",
    "save_onnx_int8",
    "save_sentence_transformer",
    "save_static_table",
]
