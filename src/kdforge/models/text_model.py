"""``TextModel``: a Hugging Face model, its tokenizer and how to read sentence views from it.

Teachers and transformer students are both ``TextModel``s. Keeping the HF model intact
(rather than a fork of its code) means any architecture ``transformers`` loads can be a
teacher, and students export with plain ``save_pretrained``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from kdforge.errors import IncompatibleError
from kdforge.models import internals
from kdforge.models.modes import evaluating
from kdforge.models.overlap import overlap_shares
from kdforge.models.pooling import pool
from kdforge.models.views import ALL_VIEWS, Views

if TYPE_CHECKING:
    from kdforge.models.placement import Placement
    from kdforge.models.retrieval import RetrievalHead

Kind = Literal["embedding", "classifier", "token_classifier", "masked_lm", "causal_lm", "joint"]
#: Kinds whose HF model has a head producing ``logits`` (the rest output hidden states).
HEADED = ("classifier", "token_classifier", "masked_lm", "causal_lm", "joint")
#: Kinds whose logits are per token (``[B, T, C]``): they depend on the batch's padding, and
#: comparing them needs teacher and student to tokenize alike.
PER_TOKEN = ("token_classifier", "masked_lm", "causal_lm")
#: Kinds with a label head (``num_labels`` classes, per sentence or per token). A ``joint`` model
#: (models/joint.py) has two: intents as ``logits`` ``[B, C]``, slot tags as ``token_logits`` ``[B, T, S]``.
LABELLED = ("classifier", "token_classifier", "joint")


class TextModel(nn.Module):
    """An HF backbone (``AutoModel``) or classifier (``AutoModelForSequenceClassification``).

    ``kind="embedding"`` pools the last hidden state into a sentence embedding (normalized
    when the source model normalizes); ``classifier``, ``token_classifier``, ``masked_lm`` and
    ``causal_lm`` produce logits from the HF head (``[B, C]``, ``[B, T, C]`` over sub-tokens, or
    ``[B, T, V]``); ``joint`` the intent logits ``[B, C]`` and the slot logits ``token_logits``.
    """

    def __init__(
        self,
        hf: nn.Module,
        tokenizer,
        kind: Kind,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int | None = None,
        name: str = "",
        teacher_blocks: list[int] | None = None,
        special_tokens: bool = True,
    ) -> None:
        super().__init__()
        self.hf = hf
        self.tokenizer = tokenizer
        self.kind = kind
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length or min(getattr(tokenizer, "model_max_length", 512) or 512, 512)
        self.name = name
        # The teacher blocks this student was cut from: the natural default layer mapping.
        self.teacher_blocks = teacher_blocks
        # False: texts are tokenized without [CLS]/[SEP] (static-embedding students average words only).
        self.special_tokens = special_tokens
        self.placement: Placement | None = None  # a teacher's dtype and device (kdforge.models.placement)
        # A RetriKT student's search over its teacher's samples (kdforge.models.retrieval); predict() mixes it in.
        self.retrieval: RetrievalHead | None = None

    # ----- shape of the model -------------------------------------------------------------
    @property
    def config(self):
        return self.hf.config

    @property
    def num_layers(self) -> int:
        return internals.num_layers(self.hf.config)

    @property
    def hidden_size(self) -> int:
        return internals.hidden_size(self.hf.config)

    @property
    def num_heads(self) -> int:
        return internals.num_heads(self.hf.config)

    @property
    def num_labels(self) -> int | None:
        return self.hf.config.num_labels if self.kind in LABELLED else None

    @property
    def num_slots(self) -> int | None:
        """Slot tags of a joint model's second head (``token_logits``)."""
        return self.hf.config.num_slots if self.kind == "joint" else None

    def num_parameters(self) -> int:
        if self.placement is not None:  # int8 packs the linear weights outside parameters(): count as loaded
            return self.placement.parameters
        return sum(p.numel() for p in self.hf.parameters())

    @property
    def device(self) -> torch.device:
        """Where the forward pass runs (for an offloaded teacher, where its weights are streamed to)."""
        if self.placement is not None and self.placement.offloaded:  # its parameters are on the meta device
            return self.placement.device
        return next(self.hf.parameters()).device

    # ----- forward --------------------------------------------------------------------------
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

    @property
    def views(self) -> frozenset[str]:
        """The views this model can give methods (a static-embedding model: its sentence embedding only)."""
        views = getattr(self.hf, "kdforge_views", ALL_VIEWS)
        if self.kind != "joint":
            views = views - {"token_logits"}
        if "token_type_ids" not in getattr(self.tokenizer, "model_input_names", ()):
            views = views - {"overlap"}  # no segment ids: the two texts of a pair cannot be told apart
        return views if self._output_layer() is not None else views - {"features"}

    def _output_layer(self) -> nn.Module | None:
        """A sequence classifier's output layer (``classifier``, as BERT, DistilBERT, RoBERTa and the pQRNN
        name it), whose input is the ``features`` view; None for other models."""
        head = getattr(self.hf, "classifier", None) if self.kind == "classifier" else None
        return head if isinstance(head, nn.Module) else None

    def prepare_for(self, needs: frozenset[str]) -> None:
        """Refuse views the model cannot give; switch to eager attention when attention probabilities
        are needed (SDPA hides them)."""
        missing = needs - self.views
        if missing:
            raise IncompatibleError(
                f"{self.name or 'the model'} cannot give the {', '.join(sorted(missing))} view(s) a method needs; "
                f"it gives: {', '.join(sorted(self.views))}"
            )
        if "attentions" in needs and getattr(self.hf.config, "_attn_implementation", "eager") != "eager":
            self.hf.set_attn_implementation("eager")

    def forward(self, inputs: dict[str, Tensor], needs: frozenset[str] = frozenset()) -> Views:
        headed = self.kind in HEADED
        want_hidden = "hidden_states" in needs or (headed and "embedding" in needs)
        want_attn = "attentions" in needs
        if want_attn:  # SDPA returns no attention maps (GPT-2 silently gives none)
            self.prepare_for(needs)
        kwargs = {"output_hidden_states": want_hidden, "output_attentions": want_attn, "return_dict": True}
        with contextlib.ExitStack() as stack:
            qkv = stack.enter_context(internals.record_qkv(self.hf)) if "qkv" in needs else None
            features = stack.enter_context(self._recording_features()) if "features" in needs else None
            out = self.hf(**inputs, **kwargs)
        mask = inputs["attention_mask"]
        views = Views(attention_mask=mask)
        if want_hidden:
            views.hidden_states = tuple(out.hidden_states)
        if want_attn:
            views.attentions = tuple(out.attentions)
        if qkv is not None:
            views.queries, views.keys, views.values = (tuple(qkv[k]) for k in ("queries", "keys", "values"))
        if headed:
            views.logits = out.logits
            if self.kind == "joint":
                views.token_logits = out.slot_logits
            if "embedding" in needs:
                views.embedding = self._sentence(out.hidden_states[-1], mask)
            if features is not None:
                if not features:
                    raise IncompatibleError(f"{self.name or 'the model'}: its classifier layer did not run")
                views.features = features[0]
        else:
            views.embedding = self._sentence(out.last_hidden_state, mask)
        if "overlap" in needs:
            views.overlap = overlap_shares(inputs["input_ids"], mask, inputs.get("token_type_ids"))
        return views

    @contextlib.contextmanager
    def _recording_features(self) -> Iterator[list[Tensor]]:
        """Record the input of the output layer during one forward pass (RoBERTa's head reads token
        states: its first token's are the features)."""
        head = self._output_layer()
        if head is None:
            raise IncompatibleError(
                f"{self.name or 'the model'} has no classifier output layer to read the features view from"
            )
        seen: list[Tensor] = []

        def record(module: nn.Module, args: tuple) -> None:
            x = args[0]
            seen.append(x[:, 0] if x.dim() == 3 else x)

        handle = head.register_forward_pre_hook(record)
        try:
            yield seen
        finally:
            handle.remove()

    def _sentence(self, tokens: Tensor, mask: Tensor) -> Tensor:
        emb = pool(tokens, mask, self.pooling)
        return nn.functional.normalize(emb, p=2, dim=-1) if self.normalize else emb

    # ----- inference helpers ----------------------------------------------------------------
    @torch.inference_mode()
    def _batched(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int, view: str) -> Tensor:
        device = self.device

        def run(a: list[str], b: list[str] | None) -> Tensor:
            inputs = {k: v.to(device) for k, v in self.tokenize(a, b).items()}
            if view == "retrieved":  # the mixture of a retrieving student (kdforge.models.retrieval)
                key = self.retrieval.key
                views = self.forward(inputs, frozenset({"logits", key}))
                return self.retrieval.log_probs(views.logits, getattr(views, key)).cpu()
            return getattr(self.forward(inputs, frozenset({view})), view).cpu()

        with evaluating(self):
            return in_length_order(texts, pairs, batch_size, run)

    def encode(self, texts: Sequence[str], batch_size: int = 64, pairs: Sequence[str] | None = None) -> Tensor:
        """Sentence (or sentence-pair) embeddings ``[N, D]`` in input order."""
        return self._batched(texts, pairs, batch_size, "embedding")

    def rows(self, view: str, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> Tensor:
        """One sequence view (``embedding``, ``features``, ``logits``, ``overlap``) per input row ``[N, D]``,
        in input order."""
        self.prepare_for(frozenset({view}))
        return self._batched(texts, pairs, batch_size, view)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64) -> Tensor:
        """Classifier logits ``[N, C]`` in input order; a retrieving student's are the log-probabilities of
        its mixture with what it retrieves."""
        return self._batched(texts, pairs, batch_size, "logits" if self.retrieval is None else "retrieved")


def in_length_order(
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    batch_size: int,
    run: Callable[[list[str], list[str] | None], Tensor],
) -> Tensor:
    """``run`` over batches of similar length (longest first), rows returned in input order."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]) - (len(pairs[i]) if pairs else 0))
    outputs: list[Tensor] = [None] * len(texts)  # type: ignore[list-item]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        result = run([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None)
        for row, i in enumerate(idx):
            outputs[i] = result[row].float()
    return torch.stack(outputs) if outputs else torch.empty(0)
