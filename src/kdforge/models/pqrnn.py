"""pQRNN: an embedding-free student of hashed ternary token features and bidirectional QRNN layers.

Kaliamoorthi, Siddhant, Li & Johnson, "Distilling Large Language Models into Tiny and Effective
Students using pQRNN", arXiv 2101.08890, Sec. 2 (the PRADO projection of Kaliamoorthi et al.,
EMNLP 2019, followed by a QRNN encoder): there is no embedding table. Each token is hashed into
``F`` ternary features in ``{-1, 0, +1}``, computed on the fly; a dense bottleneck layer turns them
into the first hidden state; stacked bidirectional QRNN layers (Bradbury et al., "Quasi-Recurrent
Neural Networks", arXiv 1611.01576) add context; a head classifies the sentence (attention pooling)
or tags each token.

Differences from the reference (tensorflow/models research/seq_flow_lite): the tokens are the
teacher tokenizer's ids rather than space-split words, so teacher and student see the same
positions (token-level distillation works) and the student reuses a tokenizer every runtime has;
the hash is a seeded polynomial hash over integers (exportable to ONNX) instead of MurmurHash of the
word's bytes; layer normalisation replaces the reference's batch normalisation (no batch
statistics: a sentence gets the same output alone or in any batch); nothing is quantized.

The model is a plain Hugging Face ``PreTrainedModel`` registered with the ``Auto`` classes when
this module is imported (``import kdforge`` does), so an exported folder loads with
``AutoModelForSequenceClassification`` / ``AutoModelForTokenClassification`` and no remote code
(a joint intent + slot student, a ``JointIntentSlotModel`` around ``PQRNNModel``, with ``AutoModel``).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput, TokenClassifierOutput

from kdforge.errors import ModelError
from kdforge.models.joint import JointConfig, JointIntentSlotModel
from kdforge.models.overlap import exact_match_flags, flagged_shares, match_flags_of
from kdforge.models.pooling import aligned_pair, attention_pool, compared_pair, pair_texts
from kdforge.models.student import BuildReport
from kdforge.models.text_model import TextModel
from kdforge.models.views import ALL_VIEWS
from kdforge.recipe.schema import StudentSpec

MODEL_TYPE = "kdforge_pqrnn"

#: The hash works modulo the Mersenne prime 2^31 - 1: every product of two residues fits in int64.
PRIME = 2**31 - 1
#: Two-bit codes taken from each 31-bit hash value (its 30 low bits).
CODES_PER_HASH = 15


# ----- projection -----------------------------------------------------------------------------


def hash_coefficients(features: int, seed: int) -> list[tuple[int, int, int]]:
    """The ``(a, b, c)`` of each of the ``ceil(F / 15)`` hash functions, drawn from ``seed``.

    Python's ``random.Random`` with an integer seed gives the same numbers on every machine
    and in every process, so a student's features depend on its seed only.
    """
    rng = random.Random(f"pqrnn/{seed}")
    count = -(-features // CODES_PER_HASH)
    return [(rng.randrange(1, PRIME), rng.randrange(PRIME), rng.randrange(PRIME)) for _ in range(count)]


def ternary_projection(input_ids: Tensor, coefficients: Tensor, features: int) -> Tensor:
    """``[B, T]`` token ids to ``[B, T, F]`` ternary features in ``{-1, 0, +1}`` (float32).

    PRADO's projection (seq_flow_lite ``SequenceStringProjection``): each hash value yields 2-bit
    codes mapped ``0 -> 0, 1 -> +1, 2 -> -1, 3 -> 0``. Hash ``k`` is the degree-2 polynomial
    ``h_k(x) = (a_k x^2 + b_k x + c_k) mod (2^31 - 1)`` of the id ``x`` (3-wise independent over
    ids), so two distinct ids agree on a feature with probability ``1/4 + 1/16 + 1/16 = 3/8``.
    ``coefficients`` is the ``[K, 3]`` int64 tensor of ``hash_coefficients``. Integer multiply, add,
    floor-divide and remainder only: vectorised, and exportable to ONNX.
    """
    a, b, c = coefficients.unbind(-1)  # [K] each
    x = input_ids.to(torch.int64).remainder(PRIME).unsqueeze(-1)  # [B, T, 1]
    hashed = ((a * x + b).remainder(PRIME) * x + c).remainder(PRIME)  # [B, T, K], Horner form
    powers = torch.full((CODES_PER_HASH,), 4, dtype=torch.int64, device=x.device).cumprod(0) // 4  # 4^j
    codes = torch.div(hashed.unsqueeze(-1), powers, rounding_mode="floor").remainder(4)  # [B, T, K, 15]
    codes = codes.flatten(-2)[..., :features]
    return (codes == 1).float() - (codes == 2).float()  # 0 -> 0, 1 -> +1, 2 -> -1, 3 -> 0


class TernaryProjection(nn.Module):
    """The projection layer: no parameters and no table, only the seeded hash functions (a
    non-persistent buffer: rebuilt from the seed, never saved)."""

    def __init__(self, features: int, seed: int) -> None:
        super().__init__()
        self.features = features
        self.seed = seed
        self.register_buffer("coefficients", self.hash_table(), persistent=False)

    def hash_table(self) -> Tensor:
        return torch.tensor(hash_coefficients(self.features, self.seed), dtype=torch.int64)

    def forward(self, input_ids: Tensor) -> Tensor:
        return ternary_projection(input_ids, self.coefficients, self.features)

    def extra_repr(self) -> str:
        return f"features={self.features}, seed={self.seed}"


# ----- QRNN -----------------------------------------------------------------------------------


def _shifted(x: Tensor, distance: int, reverse: bool, fill: float) -> Tensor:
    """``x`` moved ``distance`` steps along time (dim 1): element ``t`` holds ``x[t - d]`` (``x[t + d]``
    when ``reverse``), ``fill`` where that index is outside the sequence."""
    length = x.shape[1]
    if reverse:
        return F.pad(x, (0, 0, 0, distance), value=fill)[:, distance:]
    return F.pad(x, (0, 0, distance, 0), value=fill)[:, :length]


def linear_scan(a: Tensor, b: Tensor, steps: int, reverse: bool = False) -> Tensor:
    """All states of ``c_t = a_t * c_{t-1} + b_t`` (``c_{-1} = 0``) along dim 1 of ``[B, T, H]`` tensors.

    A Hillis-Steele parallel scan: pairs ``(a, b)`` compose associatively,
    ``(a_1, b_1) then (a_2, b_2) = (a_1 a_2, a_2 b_1 + b_2)``, and after ``k`` doubling steps element
    ``t`` holds the composition of the ``2^k`` elements ending at ``t``. ``steps >= log2(T)`` covers
    the sequence; extra steps combine with the identity ``(1, 0)`` and change nothing, exactly.
    ``reverse`` runs the recurrence from the last step to the first.
    """
    for k in range(steps):
        distance = 1 << k
        b = b + a * _shifted(b, distance, reverse, 0.0)
        a = a * _shifted(a, distance, reverse, 1.0)
    return b


def scan_steps(length: int, longest: int) -> int:
    """Doubling steps for a sequence of ``length``: enough for ``longest`` when the length is symbolic
    (tracing, ``torch.export``, ONNX), so one exported graph serves every length up to ``longest``."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or not isinstance(length, int):
        return max(1, (longest - 1).bit_length())
    return max(0, (length - 1).bit_length())


def fo_pooling(
    z: Tensor, f: Tensor, o: Tensor, mask: Tensor, reverse: bool = False, steps: int | None = None
) -> Tensor:
    """QRNN fo-pooling over ``[B, T, H]`` gates: ``c_t = f_t * c_{t-1} + (1 - f_t) * z_t``, ``h_t = o_t * c_t``.

    Bradbury et al., arXiv 1611.01576, Eq. 3-4, computed by ``linear_scan``. ``mask [B, T, 1]``
    marks real tokens: a padded step passes the state through unchanged (``f = 1``, no input) and
    outputs zero, so padding never reaches a real token in either direction.
    """
    a = f * mask + (1 - mask)
    b = (1 - f) * z * mask
    if steps is None:
        steps = max(0, (z.shape[1] - 1).bit_length())
    return o * linear_scan(a, b, steps, reverse) * mask


class BiQRNNLayer(nn.Module):
    """One bidirectional QRNN layer: per direction, gates ``Z = tanh(W_z * X)``, ``F = sigmoid(W_f * X)``,
    ``O = sigmoid(W_o * X)`` from a causal convolution of width ``k`` (Bradbury et al., Eq. 1-2: over
    the past for the forward direction, the future for the backward one), then fo-pooling; the two
    directions' outputs are concatenated (``2 H`` wide).

    ``zoneout`` (training only) keeps a unit's previous state with that probability, as the reference
    does: ``f = 1`` and no input for the kept units.
    """

    def __init__(self, width: int, state: int, kernel: int, zoneout: float = 0.0) -> None:
        super().__init__()
        self.kernel = kernel
        self.zoneout = zoneout
        self.forward_gates = nn.Conv1d(width, 3 * state, kernel)
        self.backward_gates = nn.Conv1d(width, 3 * state, kernel)

    def _direction(self, x: Tensor, mask: Tensor, conv: nn.Conv1d, reverse: bool, steps: int) -> Tensor:
        pad = (0, self.kernel - 1) if reverse else (self.kernel - 1, 0)
        gates = conv(F.pad(x.transpose(1, 2), pad)).transpose(1, 2)
        z, f, o = gates.chunk(3, dim=-1)
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        if self.training and self.zoneout > 0:
            kept = torch.rand_like(f) < self.zoneout
            f = torch.where(kept, torch.ones_like(f), f)
            z = torch.where(kept, torch.zeros_like(z), z)
        return fo_pooling(z, f, o, mask, reverse, steps)

    def forward(self, x: Tensor, mask: Tensor, steps: int) -> Tensor:
        """``x [B, T, D]`` (zero at padded positions), ``mask [B, T, 1]`` -> ``[B, T, 2 H]``."""
        return torch.cat(
            [
                self._direction(x, mask, self.forward_gates, False, steps),
                self._direction(x, mask, self.backward_gates, True, steps),
            ],
            dim=-1,
        )


def pair_features(compare_pairs: bool | str) -> int:
    """How many ``hidden_size`` vectors a classifier's head reads: one pooled sequence, the four of
    ``compared_pair`` or the eight of ``aligned_pair``."""
    return 8 if compare_pairs == "aligned" else 4 if compare_pairs else 1


OVERLAP_FEATURES = 2  # ``word_overlap``: the two texts' ``overlap_shares``


# ----- Hugging Face classes ---------------------------------------------------------------------


class PQRNNConfig(PretrainedConfig):
    """A pQRNN's shape. ``hidden_size`` (``2 * state_size``, both directions) and
    ``num_attention_heads`` (0: no attention) are derived, for code that reads any model's shape.
    ``bottleneck_size`` defaults to ``hidden_size``, so every hidden state has the model's width.

    ``max_position_embeddings`` is the longest sequence an exported (traced) model handles: the
    scan's step count is fixed there. The eager model takes any length.
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 30522,
        projection_features: int = 512,
        projection_seed: int = 0,
        bottleneck_size: int | None = None,
        state_size: int = 56,
        num_hidden_layers: int = 2,
        kernel_width: int = 2,
        dropout: float = 0.1,
        zoneout: float = 0.0,
        max_position_embeddings: int = 512,
        compare_pairs: bool | str = False,
        exact_match: bool = False,
        word_overlap: bool = False,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size  # of the tokenizer; the model has no table of that size
        self.projection_features = projection_features
        self.projection_seed = projection_seed
        self.bottleneck_size = bottleneck_size or 2 * state_size
        self.state_size = state_size
        self.num_hidden_layers = num_hidden_layers
        self.kernel_width = kernel_width
        self.dropout = dropout
        self.zoneout = zoneout
        self.max_position_embeddings = max_position_embeddings
        self.compare_pairs = compare_pairs
        self.exact_match = exact_match
        self.word_overlap = word_overlap
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return 2 * self.state_size

    @property
    def num_attention_heads(self) -> int:
        return 0


class PQRNNPreTrainedModel(PreTrainedModel):
    config_class = PQRNNConfig
    kdforge_views = ALL_VIEWS - {"attentions", "qkv"}  # no attention to read
    config: PQRNNConfig
    base_model_prefix = "pqrnn"
    main_input_name = "input_ids"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        from transformers import initialization as init

        if isinstance(module, TernaryProjection):  # a model built on the meta device, then loaded
            init.copy_(module.coefficients, module.hash_table())
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class PQRNNModel(PQRNNPreTrainedModel):
    """The encoder: projection, bottleneck (dense, layer norm, ReLU), bidirectional QRNN layers.

    ``hidden_states`` are the bottleneck output (``bottleneck_size`` wide, by default the model's
    ``hidden_size``) and each QRNN layer's output (``2 * state_size``), like a transformer's embedding
    output and block outputs.
    """

    def __init__(self, config: PQRNNConfig) -> None:
        super().__init__(config)
        self.projection = TernaryProjection(config.projection_features, config.projection_seed)
        self.bottleneck = nn.Linear(config.projection_features + int(config.exact_match), config.bottleneck_size)
        self.norm = nn.LayerNorm(config.bottleneck_size)
        widths = [config.bottleneck_size] + [2 * config.state_size] * (config.num_hidden_layers - 1)
        self.layers = nn.ModuleList(
            BiQRNNLayer(width, config.state_size, config.kernel_width, config.zoneout ** (i + 1))
            for i, width in enumerate(widths)  # the reference's layer-wise decaying zoneout
        )
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,  # the texts of a pair, read by ``exact_match`` only
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,  # there are none
        return_dict: bool | None = None,
        match_flags: Tensor | None = None,  # ``exact_match_flags`` when the caller has them already
        **kwargs,
    ) -> BaseModelOutput | tuple:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        dtype = self.bottleneck.weight.dtype
        mask = attention_mask.unsqueeze(-1).to(dtype)
        x = self.projection(input_ids).to(dtype)
        if self.config.exact_match:
            if match_flags is None:
                match_flags = exact_match_flags(input_ids, attention_mask, token_type_ids)
            x = torch.cat([x, match_flags.to(dtype)], dim=-1)
        x = self.dropout(torch.relu(self.norm(self.bottleneck(x)))) * mask
        steps = scan_steps(input_ids.shape[1], self.config.max_position_embeddings)
        hidden = [x]
        for layer in self.layers:
            x = self.dropout(layer(x, mask, steps))
            hidden.append(x)
        out = BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)
        return out if return_dict is not False else out.to_tuple()


class PQRNNForSequenceClassification(PQRNNPreTrainedModel):
    """pQRNN encoder, attention pooling over the real tokens (softmax of a learned score per token,
    seq_flow_lite ``AttentionPooling``), and a linear classifier. ``num_labels = 1`` is regression.

    ``compare_pairs``: the two texts of a pair (``token_type_ids``) are pooled apart and the classifier
    reads ``[u, v, |u - v|, u * v]`` (``pooling.compared_pair``). Pooled together, a pair is one bag of
    states, and a model this small has no attention across the texts to tell which words they share.
    ``compare_pairs: aligned`` adds what each text's tokens find in the other (``pooling.aligned_pair``).
    ``word_overlap``: the classifier also reads each text's share of words the other holds
    (``overlap_shares``), after the dropout.
    """

    def __init__(self, config: PQRNNConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.pqrnn = PQRNNModel(config)
        self.attention = nn.Linear(config.hidden_size, 1)
        self.dropout = nn.Dropout(config.dropout)
        features = pair_features(config.compare_pairs) * config.hidden_size
        features += OVERLAP_FEATURES * int(config.word_overlap)
        self.classifier = nn.Linear(features, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        flags = None
        if self.config.word_overlap:  # the encoder's exact_match reads the same flags: compared once
            first, second = pair_texts(attention_mask, token_type_ids)
            flags = match_flags_of(input_ids, first, second)
        encoded = self.pqrnn(
            input_ids,
            attention_mask,
            token_type_ids,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            match_flags=flags,
        )
        if self.config.compare_pairs == "aligned":
            pooled = aligned_pair(encoded.last_hidden_state, attention_mask, token_type_ids, self.attention)
        elif self.config.compare_pairs:
            pooled = compared_pair(encoded.last_hidden_state, attention_mask, token_type_ids, self.attention)
        else:
            pooled = attention_pool(encoded.last_hidden_state, attention_mask, self.attention)
        pooled = self.dropout(pooled)
        if self.config.word_overlap:
            pooled = torch.cat([pooled, flagged_shares(flags, first, second).to(pooled.dtype)], dim=-1)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels)
        out = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states)
        return out if return_dict is not False else out.to_tuple()


class PQRNNForTokenClassification(PQRNNPreTrainedModel):
    """pQRNN encoder and a linear tagger on each token's state: logits ``[B, T, C]``."""

    def __init__(self, config: PQRNNConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.pqrnn = PQRNNModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutput | tuple:
        encoded = self.pqrnn(input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(encoded.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        out = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states)
        return out if return_dict is not False else out.to_tuple()


AutoConfig.register(MODEL_TYPE, PQRNNConfig, exist_ok=True)
AutoModel.register(PQRNNConfig, PQRNNModel, exist_ok=True)
AutoModelForSequenceClassification.register(PQRNNConfig, PQRNNForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(PQRNNConfig, PQRNNForTokenClassification, exist_ok=True)

# ----- building a student -----------------------------------------------------------------------

_CLASSES: dict[str, type[PQRNNPreTrainedModel]] = {
    "classifier": PQRNNForSequenceClassification,
    "token_classifier": PQRNNForTokenClassification,
    "embedding": PQRNNModel,
}


def parameter_count(
    features: int,
    bottleneck: int,
    hidden: int,
    layers: int,
    kernel: int,
    labels: int,
    kind: str = "classifier",
    slots: int = 0,
    compare_pairs: bool | str = False,
    exact_match: bool = False,
    word_overlap: bool = False,
) -> int:
    """Parameters of a pQRNN, without building it; the vocabulary size plays no part.

    ``(F + 3) B`` (bottleneck and its layer norm) ``+ sum_l 2 (k D_l + 1) 3 H`` (two directions of
    Z/F/O convolutions, ``D_0 = B``, ``D_l = 2 H``) ``+ (2 H + 1) C`` (the head) ``+ 2 H + 1`` (the
    attention-pooling score, classifier and joint). A ``joint`` model adds a slot head, ``(2 H + 1) S``.
    A classifier that compares pairs reads ``4 * 2 H`` features (``aligned``: ``8 * 2 H``), its head
    ``(8 H + 1) C`` (``(16 H + 1) C``). ``exact_match``'s flag adds a bottleneck column, ``B``;
    ``word_overlap``'s two shares add ``2 C`` to the head.
    """
    total = (features + int(exact_match) + 3) * bottleneck
    for layer in range(layers):
        width = bottleneck if layer == 0 else 2 * hidden
        total += 2 * (kernel * width + 1) * 3 * hidden
    if kind != "embedding":
        pairs = compare_pairs if kind == "classifier" else False
        total += (pair_features(pairs) * 2 * hidden + 1) * labels
        if kind == "classifier" and word_overlap:
            total += OVERLAP_FEATURES * labels
    if kind in ("classifier", "joint"):
        total += 2 * hidden + 1
    if kind == "joint":
        total += (2 * hidden + 1) * slots
    return total


@dataclass
class PQRNNBuildReport(BuildReport):
    """A pQRNN student is all fresh tensors: the log says how many parameters they hold."""

    parameters: int = 0

    def describe(self) -> str:
        return (
            f"pQRNN of {self.parameters:,} parameters in {self.fresh} fresh tensors "
            "(hashed token features, no embedding table; nothing copied from the teacher)"
        )


def build_pqrnn(teacher: TextModel, spec: StudentSpec) -> tuple[TextModel, BuildReport]:
    """A fresh pQRNN student of ``teacher``'s kind, labels and tokenizer, shaped by ``spec.pqrnn``.

    Classifier teachers give an attention-pooling classifier, token classifiers a tagger, sentence
    encoders an encoder whose token states the teacher's pooling turns into sentence embeddings, joint
    intent + slot models both heads on one encoder (models/joint.py: attention pooling for the intent,
    the tagger's head for the slots).
    """
    p = spec.pqrnn
    assert p is not None
    if teacher.kind not in _CLASSES and teacher.kind != "joint":
        raise ModelError(
            f"student.pqrnn: a pQRNN student classifies sentences, tags tokens or embeds sentences, "
            f"but the teacher is a {teacher.kind} model; use a transformer student for language modelling"
        )
    for option in ("compare_pairs", "exact_match", "word_overlap"):
        if getattr(p, option) and teacher.kind != "classifier":
            raise ModelError(
                f"student.pqrnn.{option}: only a sentence(-pair) classifier compares pairs, the teacher is a "
                f"{teacher.kind} model; remove {option}"
            )
    if spec.vocabulary is not None:
        raise ModelError(
            "student.vocabulary: a pQRNN student has no embedding table to shrink (its size does not depend "
            "on the vocabulary); remove 'vocabulary'"
        )
    tokenizer = copy.deepcopy(teacher.tokenizer)
    labelled = teacher.kind in ("classifier", "token_classifier")
    source = teacher.hf.config
    config = PQRNNConfig(
        vocab_size=len(tokenizer),
        projection_features=p.features,
        projection_seed=p.seed,
        bottleneck_size=p.bottleneck or 2 * p.hidden,
        state_size=p.hidden,
        num_hidden_layers=p.layers,
        kernel_width=p.kernel,
        dropout=p.dropout,
        zoneout=p.zoneout,
        max_position_embeddings=teacher.max_length,
        compare_pairs=p.compare_pairs,
        exact_match=p.exact_match,
        word_overlap=p.word_overlap,
        pad_token_id=tokenizer.pad_token_id,
        **({"id2label": dict(source.id2label), "label2id": dict(source.label2id)} if labelled else {}),
    )
    torch.manual_seed(0)  # fresh tensors are the same on every run
    if teacher.kind == "joint":
        joint = JointConfig(
            backbone=config,
            slot_labels=list(source.slot_labels),
            intent_pooling="attention",
            classifier_dropout=p.dropout,
            id2label=dict(source.id2label),
            label2id=dict(source.label2id),
            pad_token_id=tokenizer.pad_token_id,
        )
        hf = JointIntentSlotModel(joint).eval()
    else:
        hf = _CLASSES[teacher.kind](config).eval()
    student = TextModel(
        hf,
        tokenizer,
        teacher.kind,
        pooling=teacher.pooling,
        normalize=teacher.normalize,
        max_length=teacher.max_length,
        name=f"pQRNN student of {teacher.name}",
    )
    report = PQRNNBuildReport(
        kept_blocks=[], copied=0, fresh=len(hf.state_dict()), source="pqrnn", parameters=student.num_parameters()
    )
    return student, report
