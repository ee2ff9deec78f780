"""``OnnxTextModel``: an exported ONNX folder, scored and timed like a ``TextModel``.

``kdforge export --format onnx | onnx-int8`` writes ``model.onnx`` (a graph whose outputs are the
final result: the pooled, normalized sentence embedding, a classifier's logits, a tagger's
per-token logits, or a joint model's intent and slot logits), the tokenizer and ``kdforge.json``.
This class runs that folder with onnxruntime behind the same ``tokenize``/``encode``/``predict``
interface as ``TextModel``, and the same ``model(inputs, needs) -> Views`` call that tagging and
joint evaluation use, so ``kdforge eval`` and ``kdforge bench`` measure the deployed artefact itself
rather than the PyTorch model it came from. It is for inference only: it cannot teach or be trained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kdforge.errors import ModelError
from kdforge.models.loading import META_FILE
from kdforge.models.text_model import Kind, in_length_order
from kdforge.models.views import Views

ONNX_FILE = "model.onnx"
#: The kinds whose result the exported graph outputs in one call, and the views it outputs (graph
#: outputs carry the view names). A token classifier's ``logits`` are per token ``[B, T, C]``.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "embedding": ("embedding",),
    "classifier": ("logits",),
    "token_classifier": ("logits",),
    "joint": ("logits", "token_logits"),
}
#: The ``format`` that ``kdforge.json`` of an exported ONNX folder records.
FORMATS = ("onnx", "onnx-int8")
_FLOATS = {1, 10, 16}  # onnx TensorProto FLOAT, FLOAT16, BFLOAT16
_INT8 = {2, 3}  # UINT8, INT8: quantized weights
_QUANT_SUFFIXES = ("_scale", "_zero_point")  # onnxruntime's names for quantization constants


def is_onnx_folder(path: Path) -> bool:
    """A folder ``kdforge export`` wrote as ONNX (others with a ``model.onnx`` load as they did before)."""
    if not (path.is_dir() and (path / ONNX_FILE).is_file() and (path / META_FILE).is_file()):
        return False
    return json.loads((path / META_FILE).read_text()).get("format") in FORMATS


def onnx_weight_files(folder: Path) -> list[Path]:
    """The graph and any external-data files beside it (what a deployment copies)."""
    return [p for p in folder.iterdir() if p.suffix in (".onnx", ".data") or p.name.endswith(".onnx_data")]


class OnnxTextModel:
    """An ONNX graph, its tokenizer and what ``kdforge.json`` says about it (kind, labels, length)."""

    def __init__(self, folder: Path, name: str = "") -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer, PretrainedConfig

        self.folder = Path(folder)
        self.name = name or str(folder)
        meta = json.loads((self.folder / META_FILE).read_text())
        if meta.get("kind") not in OUTPUTS:
            raise ModelError(f"{self.name}: {META_FILE} does not say which kind of model the ONNX graph is")
        self.kind: Kind = meta["kind"]
        self.format: str = meta["format"]
        self.pooling: str = meta.get("pooling", "mean")
        self.normalize: bool = meta.get("normalize", False)
        self.max_length: int = meta.get("max_length") or 512
        self.special_tokens: bool = meta.get("special_tokens", True)
        self.teacher_blocks: list[int] | None = meta.get("teacher_blocks")
        labels = meta.get("labels") or []
        # Tasks read label names from ``model.hf.config`` (``id2label``, a joint model's ``slot_labels``)
        # as they do for a TextModel.
        self.config = PretrainedConfig(id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
        self.config.slot_labels = list(meta.get("slot_labels") or [])
        self.training = False  # what ``word_passes`` saves and restores around evaluation
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same CPU share as a PyTorch model gets
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelError(f"{self.name}: onnxruntime cannot load {ONNX_FILE}: {str(err).splitlines()[0]}") from err
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.output_names[: len(OUTPUTS[self.kind])] != list(OUTPUTS[self.kind]):
            raise ModelError(
                f"{self.name}: the graph outputs {', '.join(self.output_names)}, "
                f"but a {self.kind} graph outputs {', '.join(OUTPUTS[self.kind])}"
            )

    @property
    def hf(self) -> OnnxTextModel:
        """Stands where ``TextModel.hf`` does for code that reads ``model.hf.config`` (label names)."""
        return self

    @property
    def num_labels(self) -> int | None:
        return len(self.config.id2label) if self.kind != "embedding" else None

    @property
    def num_slots(self) -> int | None:
        return len(self.config.slot_labels) if self.kind == "joint" else None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def num_parameters(self) -> int:
        """Elements of the graph's weight initializers (quantization scales and zero points not counted)."""
        import onnx

        graph = onnx.load(str(self.folder / ONNX_FILE), load_external_data=False).graph
        return sum(
            int(np.prod(t.dims))
            for t in graph.initializer
            if t.data_type in _FLOATS | _INT8 and not t.name.endswith(_QUANT_SUFFIXES)
        )

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in onnx_weight_files(self.folder))

    # ----- inference ------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, Tensor]:
        encoded = self.tokenizer(
            list(texts),
            list(pairs) if pairs is not None else None,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=self.special_tokens,
            return_tensors="pt",
        )
        return dict(encoded)

    def run(self, inputs: dict[str, Tensor]) -> Tensor:
        """One session call on tokenized inputs: the graph's first output (embedding or logits)."""
        return self.forward(inputs).require(self.output_names[0], self.name)

    def forward(self, inputs: dict[str, Tensor], needs: frozenset[str] = frozenset()) -> Views:
        """Every output of one session call, as ``TextModel.forward`` gives them (``needs`` is moot:
        the graph computes all of its outputs anyway)."""
        feed = {name: inputs[name].cpu().numpy().astype(np.int64, copy=False) for name in self.input_names}
        outputs = self.session.run(self.output_names, feed)
        views = Views(attention_mask=inputs["attention_mask"])
        for name, value in zip(self.output_names, outputs, strict=True):
            setattr(views, name, torch.from_numpy(value))
        return views

    __call__ = forward

    def eval(self) -> OnnxTextModel:
        return self

    def train(self, mode: bool = True) -> OnnxTextModel:
        """A no-op beside ``eval``: the graph has no training mode (callers restore ``training`` with it)."""
        return self

    def _batched(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> Tensor:
        # Sorted by length as TextModel does, so padding (and timing) compares like with like.
        return in_length_order(texts, pairs, batch_size, lambda a, b: self.run(self.tokenize(a, b)))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """Sentence embeddings ``[N, D]`` in input order."""
        if self.kind != "embedding":
            raise ModelError(f"{self.name}: the ONNX graph is of kind {self.kind}: it outputs logits, not embeddings")
        return self._batched(texts, None, batch_size)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> Tensor:
        """Classifier logits ``[N, C]`` in input order."""
        if self.kind != "classifier":
            raise ModelError(f"{self.name}: the ONNX graph is of kind {self.kind}: it outputs embeddings, not logits")
        return self._batched(texts, pairs, batch_size)


def load_onnx(path: Path, kind: Kind | None, num_labels: int | None, name: str) -> OnnxTextModel:
    """An exported ONNX folder, checked against the kind (and label count) the caller needs."""
    model = OnnxTextModel(path, name)
    if kind is not None and kind != model.kind:
        raise ModelError(f"{name}: the ONNX graph is of kind {model.kind}, not {kind}")
    if num_labels is not None and model.num_labels not in (None, num_labels):
        raise ModelError(f"{name}: the classifier has {model.num_labels} labels but the task has {num_labels}")
    return model
