"""Export as ONNX for onnxruntime: one graph from token ids to the final result, fp32 or int8.

The graph ends where kdforge's own inference ends (the pooled, normalized sentence embedding
of an embedding model, the logits of a classifier, the per-token logits of a tagger, or both of
a joint intent + slot model's heads), so serving it is the tokenizer plus one ``session.run``,
with no pooling code to re-implement beside it. Batch and sequence axes are dynamic. The folder
holds ``model.onnx``, the tokenizer and ``kdforge.json`` (kind, pooling, normalization, maximum
length, whether the tokenizer adds special tokens, label and slot-tag names, input and output
names).

``onnx-int8`` is onnxruntime's dynamic quantization of that graph: int8 weights (one scale per
output channel) for the matrix multiplications and the embedding tables, activations quantized
on the fly. It needs no calibration data, shrinks the file about 4x and runs the linear layers
with integer kernels, which is where a small encoder spends its CPU time.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from kdforge.errors import ModelError
from kdforge.models.loading import META_FILE
from kdforge.models.modes import evaluating
from kdforge.models.onnx_model import ONNX_FILE, OUTPUTS
from kdforge.models.text_model import PER_TOKEN, TextModel

#: ONNX opset of the exported graphs: has LayerNormalization, and every onnxruntime since 1.14 runs it.
OPSET = 17
_SAMPLE = ["kdforge exports this sentence to check the graph", "a short one"]


class _Graph(nn.Module):
    """``TextModel.forward`` over positional input tensors, returning the views that are exported."""

    def __init__(self, model: TextModel, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.views = OUTPUTS[model.kind]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        views = self.model.forward(dict(zip(self.input_names, inputs, strict=True)), frozenset(self.views))
        return tuple(getattr(views, name) for name in self.views)


def _axes(kind: str, inputs: list[str]) -> dict[str, dict[int, str]]:
    """Dynamic axes: batch and sequence of every input; batch of every output, and sequence of per-token ones."""
    per_token = {"token_logits"} | ({"logits"} if kind in PER_TOKEN else set())
    outputs = {name: {0: "batch", 1: "sequence"} if name in per_token else {0: "batch"} for name in OUTPUTS[kind]}
    return {name: {0: "batch", 1: "sequence"} for name in inputs} | outputs


def _check_exportable(model: TextModel) -> None:
    if model.kind not in OUTPUTS:
        raise ModelError(
            "ONNX export covers embedding models, classifiers, taggers and joint intent + slot models; "
            f"this model is of kind {model.kind} (use format hf)"
        )
    placement = model.placement
    if placement is not None and (placement.dtype == "int8" or placement.offloaded):
        raise ModelError(f"{model.name}: a model placed as {placement.describe()} cannot be traced; load it again")


def save_onnx(model: TextModel, path: str | Path) -> Path:
    """``model.onnx`` (fp32, dynamic batch and sequence axes), the tokenizer and ``kdforge.json``."""
    _check_exportable(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sample = {k: v.to(model.device) for k, v in model.tokenize(_SAMPLE).items()}
    names = list(sample)
    outputs = list(OUTPUTS[model.kind])
    try:
        # The TorchScript exporter (dynamo=False) traces any HF model without onnxscript; its
        # deprecation and tracer notices are about code paths these graphs do not take.
        with evaluating(model), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Graph(model, names),
                tuple(sample[name] for name in names),
                str(path / ONNX_FILE),
                input_names=names,
                output_names=outputs,
                dynamic_axes=_axes(model.kind, names),
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except RuntimeError as err:  # torch.onnx.errors.* derive from it
        raise ModelError(f"{model.name}: torch.onnx.export failed: {str(err).splitlines()[0]}") from err
    model.tokenizer.save_pretrained(path)
    labels = slot_labels = None
    if model.kind != "embedding":
        id2label = model.hf.config.id2label
        labels = [str(id2label[i]) for i in range(len(id2label))]
    if model.kind == "joint":
        slot_labels = [str(tag) for tag in model.hf.config.slot_labels]
    meta = {
        "format": "onnx",
        "kind": model.kind,
        "pooling": model.pooling,
        "normalize": model.normalize,
        "max_length": model.max_length,
        "special_tokens": model.special_tokens,  # False for static-embedding students
        "labels": labels,
        "slot_labels": slot_labels,
        "inputs": names,
        "outputs": outputs,
        "opset": OPSET,
        "teacher_blocks": model.teacher_blocks,
    }
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def save_onnx_int8(model: TextModel, path: str | Path) -> Path:
    """The fp32 graph of ``save_onnx``, dynamically quantized by onnxruntime (QInt8 weights, per channel)."""
    from onnxruntime import __version__ as ort_version
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _check_exportable(model)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        save_onnx(model, tmp)
        path.mkdir(parents=True, exist_ok=True)
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # its advice to pre-process applies to static (calibrated) quantization
        try:
            quantize_dynamic(Path(tmp) / ONNX_FILE, path / ONNX_FILE, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(previous)
        for item in Path(tmp).iterdir():
            if item.name not in (ONNX_FILE, META_FILE) and item.is_file():
                shutil.copy(item, path / item.name)
        meta = json.loads((Path(tmp) / META_FILE).read_text())
    meta["format"] = "onnx-int8"
    meta["quantization"] = {
        "method": "dynamic",
        "weights": "int8, per output channel",
        "activations": "uint8, per batch",
        "library": f"onnxruntime {ort_version}",
    }
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path
