"""Static-embedding students: one vector per token, a sentence is the mean of its tokens' vectors.

No attention, no layers: encoding is a table look-up and an average, hundreds of times faster
than a transformer on a CPU. The student is built in two steps.

1. Data-free initialisation, the Model2Vec recipe (Tulkens & van Dongen, MinishLab/model2vec,
   2024): every vocabulary token is embedded by the teacher as a sentence of that one token
   (``[CLS] token [SEP]`` for BERT-style tokenizers, pooled as the teacher pools, not normalized),
   the resulting table is reduced to ``dims`` by PCA, and each row is scaled by its SIF weight
   ``a / (a + p(token))`` (Arora, Liang & Ma, "A Simple but Tough-to-Beat Baseline for Sentence
   Embeddings", ICLR 2017). Baking the weight into the vector makes a plain mean over tokens a
   weighted mean, so frequent, uninformative tokens count less. ``p`` comes from the token
   frequencies of the stage's training text when there is any (unseen tokens: ``p = 0``, weight
   1); without text, Model2Vec's Zipf estimate by rank (a token's id is its rank). On STS-B with
   the MiniLM teacher, frequencies from the 122K training sentences lift the untrained table from
   61.2 to 69.6 Spearman on test (a = 1e-4), as they know which tokens are frequent where Zipf
   over BERT's ids can only guess.
2. Distillation on sentences: the table is trained like any student against the teacher's
   sentence embeddings (``kdforge run``; the recipe's methods say how; ``recipes/sts-static.yaml``).

The table lives in a tiny Hugging Face model (``model_type: kdforge_static``), so the student
saves, loads and trains through the same paths as transformer students; its output is the
per-token vectors (``last_hidden_state``), which ``TextModel`` mean-pools as it does for any
encoder. The student reads text without special tokens (``TextModel.special_tokens = False``),
as sentence-transformers' ``StaticEmbedding`` and Model2Vec do, so all three give the same
sentence vectors.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from kdforge.errors import ModelError
from kdforge.models.loading import META_FILE
from kdforge.models.modes import evaluating
from kdforge.models.pooling import pool
from kdforge.models.student import BuildReport
from kdforge.models.text_model import TextModel
from kdforge.models.vocabulary import choose_kept, reduced_tokenizer, token_counts
from kdforge.recipe.schema import StudentSpec

MODEL_TYPE = "kdforge_static"
#: The plain-table layout (Model2Vec's): one safetensors tensor, a tokenizer.json and a config.json.
TABLE_WEIGHTS, TABLE_KEY, TABLE_CONFIG = "model.safetensors", "embeddings", "config.json"
#: The views a static student can give methods: it has no layers, attention or token states
#: aligned with the teacher's (it reads no special tokens).
VIEWS = frozenset({"embedding"})


class StaticEmbeddingConfig(PretrainedConfig):
    """A token-embedding table: ``vocab_size`` rows of ``hidden_size``; no layers, no heads."""

    model_type = MODEL_TYPE

    def __init__(self, vocab_size: int = 30522, hidden_size: int = 256, **kwargs) -> None:
        for fixed in ("num_hidden_layers", "num_attention_heads"):
            kwargs.pop(fixed, None)
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = 0  # read by kdforge.models.internals: no transformer blocks
        self.num_attention_heads = 0


class StaticEmbeddingModel(PreTrainedModel):
    """Looks each token up in one ``nn.Embedding``; the token vectors are the output."""

    config_class = StaticEmbeddingConfig
    base_model_prefix = "static"
    main_input_name = "input_ids"
    kdforge_views = VIEWS

    def __init__(self, config: StaticEmbeddingConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=module.embedding_dim**-0.5)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **_: object,
    ) -> BaseModelOutput:
        """``[B, T, dims]`` token vectors; padding is left to the caller's mask (mean pooling)."""
        if output_attentions:
            raise ModelError("a static-embedding model has no attention maps")
        tokens = self.embeddings(input_ids)
        return BaseModelOutput(last_hidden_state=tokens, hidden_states=(tokens,) if output_hidden_states else None)


AutoConfig.register(MODEL_TYPE, StaticEmbeddingConfig, exist_ok=True)
AutoModel.register(StaticEmbeddingConfig, StaticEmbeddingModel, exist_ok=True)


def static_text_model(
    table: Tensor, tokenizer, normalize: bool, max_length: int | None = None, name: str = ""
) -> TextModel:
    """A ``TextModel`` around a ``[V, dims]`` table: mean pooling, no special tokens."""
    config = StaticEmbeddingConfig(
        vocab_size=table.shape[0], hidden_size=table.shape[1], pad_token_id=tokenizer.pad_token_id
    )
    hf = StaticEmbeddingModel(config)
    with torch.no_grad():
        hf.embeddings.weight.copy_(table)
    return TextModel(
        hf.eval(),
        tokenizer,
        "embedding",
        pooling="mean",
        normalize=normalize,
        max_length=max_length,
        name=name,
        special_tokens=False,
    )


def from_backend(
    table: Tensor, backend, normalize: bool, max_length: int | None, kind: str | None, name: str
) -> TextModel:
    """A static ``TextModel`` from a table and a ``tokenizers.Tokenizer`` (a sentence-transformers
    ``StaticEmbedding``, a Model2Vec folder, kdforge's own exports)."""
    from transformers import PreTrainedTokenizerFast

    if kind not in (None, "embedding"):
        raise ModelError(f"{name}: a static-embedding model gives sentence embeddings only, not a {kind} model")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    unk = getattr(backend.model, "unk_token", None)
    if unk is not None and backend.token_to_id(unk) is not None:
        tokenizer.unk_token = unk
    # Padded positions are masked out of the mean: any token serves, the tokenizer's own when it has one.
    padding = backend.padding or {}
    tokenizer.pad_token = padding.get("pad_token") or tokenizer.unk_token or backend.id_to_token(0)
    return static_text_model(table.float(), tokenizer, normalize, max_length, name)


def is_static_table(path: Path) -> bool:
    """A folder in the plain-table layout (``kdforge export --format static-table``, or Model2Vec's)."""
    config = path / TABLE_CONFIG
    return (
        path.is_dir()
        and (path / TABLE_WEIGHTS).is_file()
        and config.is_file()
        and json.loads(config.read_text()).get("model_type") == "model2vec"
    )


def load_static_table(path: Path, kind: str | None, name: str) -> TextModel:
    """Load a plain-table folder; Model2Vec's per-token weights and vocabulary mapping are folded in."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    config = json.loads((path / TABLE_CONFIG).read_text())
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
    tensors = load_file(str(path / TABLE_WEIGHTS))
    table = tensors[TABLE_KEY].float()
    if "mapping" in tensors:
        table = table[tensors["mapping"].long()]
    if "weights" in tensors:
        table = table * tensors["weights"].float()[:, None]
    backend = Tokenizer.from_file(str(path / "tokenizer.json"))
    max_length = meta.get("max_length", config.get("max_length"))
    return from_backend(table, backend, config.get("normalize", False), max_length, kind, name)


# ----- data-free initialisation from the teacher ---------------------------------------------------


@dataclass
class TokenTable:
    """The initial table and what made it, kept so the PCA can be inverted (tests, inspection).

    ``vectors = weights[:, None] * (embeddings - mean) @ components.T``; hence
    ``embeddings ~ vectors / weights[:, None] @ components + mean``, exact when ``dims`` is the
    teacher's width.
    """

    vectors: Tensor  # [V, dims]
    mean: Tensor  # [H] mean of the teacher's token embeddings
    components: Tensor  # [dims, H] principal axes, orthonormal rows, by decreasing variance
    weights: Tensor  # [V] SIF weight of each token
    explained: float  # share of the variance the kept axes carry


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a text (``[CLS]`` / ``[SEP]``; none for GPT-2)."""
    probe = "a"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise ModelError(f"cannot tell where {type(tokenizer).__name__} puts its special tokens")


@torch.inference_mode()
def teacher_token_embeddings(teacher: TextModel, ids: Sequence[int], batch_size: int = 512) -> Tensor:
    """``[len(ids), H]``: the teacher's sentence vector of each token alone between its special tokens.

    What the teacher answers for a one-token sentence, pooled as the teacher pools its sentences
    but not normalized: for a mean-pooling teacher, Model2Vec's vector (the mean of the output
    states of ``[CLS] token [SEP]``). The norms carry information the distillation uses: normalized
    vectors started a student that ended 0.8 Spearman lower on STS-B test (MiniLM teacher).
    """
    prefix, suffix = special_affixes(teacher.tokenizer)
    rows = torch.tensor([[*prefix, i, *suffix] for i in ids], dtype=torch.long)
    device = teacher.device
    out = []
    with evaluating(teacher):
        for start in tqdm(range(0, len(rows), batch_size), desc="static init: teacher token embeddings", leave=False):
            input_ids = rows[start : start + batch_size]
            inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
            if "token_type_ids" in teacher.tokenizer.model_input_names:
                inputs["token_type_ids"] = torch.zeros_like(input_ids)
            views = teacher({k: v.to(device) for k, v in inputs.items()}, frozenset({"hidden_states"}))
            out.append(pool(views.hidden_states[-1], views.attention_mask, teacher.pooling).float().cpu())
    return torch.cat(out)


def pca(embeddings: Tensor, dims: int) -> tuple[Tensor, Tensor, float]:
    """``(mean, components [dims, H], explained share)`` of ``embeddings`` ``[N, H]``.

    Eigen-decomposition of the covariance in float64; each axis's sign is fixed so that its
    largest loading is positive (the same table on every run and machine).
    """
    x = embeddings.double()
    mean = x.mean(0)
    centred = x - mean
    values, vectors = torch.linalg.eigh(centred.T @ centred / max(1, len(x) - 1))
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    components = vectors[:, :dims].T
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    components = components * signs
    explained = float(values[:dims].sum() / values.sum()) if values.sum() > 0 else 1.0
    return mean.float(), components.float(), explained


def sif_weights(size: int, sif: float, counts: Tensor | None = None) -> Tensor:
    """``a / (a + p(token))`` (SIF, Arora et al. 2017) for ``size`` tokens; ones when ``a`` is 0.

    ``p`` is each token's share of ``counts`` (the training text's token frequencies); without
    counts, Zipf's law over the ids (rank ``r`` = id, ``p ~ 1 / (r + 2)``), as Model2Vec estimates it.
    """
    if sif == 0:
        return torch.ones(size)
    if counts is not None and counts.sum() > 0:
        p = counts.double() / counts.sum()
    else:
        inverse_rank = 1.0 / torch.arange(2, size + 2, dtype=torch.float64)
        p = inverse_rank / inverse_rank.sum()
    return (sif / (sif + p)).float()


def teacher_token_table(
    teacher: TextModel, ids: Sequence[int], dims: int, sif: float, counts: Tensor | None = None
) -> TokenTable:
    """The Model2Vec table for the teacher ids ``ids``: teacher embeddings, PCA to ``dims``, SIF weights."""
    embeddings = teacher_token_embeddings(teacher, ids)
    if dims > embeddings.shape[1]:
        raise ModelError(
            f"student.static.dims is {dims}, but the teacher's embeddings have {embeddings.shape[1]} dimensions "
            f"and PCA cannot add any; use dims <= {embeddings.shape[1]}, or init: random"
        )
    if dims > len(ids):
        raise ModelError(f"student.static.dims is {dims}, more than the {len(ids)} tokens the PCA is fitted on")
    mean, components, explained = pca(embeddings, dims)
    weights = sif_weights(len(ids), sif, counts)
    vectors = weights[:, None] * ((embeddings - mean) @ components.T)
    return TokenTable(vectors, mean, components, weights, explained)


# ----- building the student --------------------------------------------------------------------------


@dataclass
class StaticBuildReport(BuildReport):
    """What the static student was made of, for the run log."""

    table: TokenTable | None = None
    frequencies: str = ""

    def describe(self) -> str:
        if self.table is None:
            text = f"static table with random vectors; {self.frequencies}"
        else:
            size, dims = self.table.vectors.shape
            text = (
                f"static table {size:,} x {dims} from the teacher's token embeddings "
                f"(PCA keeps {self.table.explained:.1%} of their variance); {self.frequencies}"
            )
        if self.vocabulary is not None:
            text += f"; vocabulary {self.vocabulary[0]:,} of {self.vocabulary[1]:,} tokens"
        return text


def build_static(
    teacher: TextModel, spec: StudentSpec, texts: Sequence[str] | None = None
) -> tuple[TextModel, StaticBuildReport]:
    """A static-embedding student of ``teacher`` as ``spec.static`` says (see the module docstring).

    ``texts`` (the stage's training sentences) give the token frequencies of the SIF weights and,
    with ``student.vocabulary``, decide which tokens the table keeps.
    """
    static = spec.static
    assert static is not None
    if teacher.kind != "embedding":
        raise ModelError(
            f"a static-embedding student learns sentence embeddings (task sts); the teacher is a {teacher.kind} model"
        )
    tokenizer = copy.deepcopy(teacher.tokenizer)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("a static-embedding student needs a fast (Rust) tokenizer, as sentence-transformers does")
    size = len(tokenizer)
    counts = token_counts(tokenizer, texts) if texts else None
    kept = list(range(size))
    report = StaticBuildReport(kept_blocks=[], copied=0, fresh=0)
    if spec.vocabulary is not None:
        if counts is None:
            raise ModelError("student.vocabulary needs the training text to count token frequencies")
        kept = choose_kept(counts, tokenizer.all_special_ids, spec.vocabulary.keep, spec.vocabulary.multiple_of)
        if len(kept) < size:
            tokenizer = reduced_tokenizer(tokenizer, kept)
            report.vocabulary = (len(kept), size)
    kept_counts = counts[kept] if counts is not None else None
    if not static.sif:
        report.frequencies = "no SIF weighting"
    elif texts:
        report.frequencies = f"SIF a={static.sif:g} from the token frequencies of {len(texts):,} training texts"
    else:
        report.frequencies = f"SIF a={static.sif:g} from Zipf's law over token ids"
    if static.init == "teacher":
        report.table = teacher_token_table(teacher, kept, static.dims, static.sif, kept_counts)
        table = report.table.vectors
    else:
        generator = torch.Generator().manual_seed(0)
        table = torch.randn(len(kept), static.dims, generator=generator) * static.dims**-0.5
        table = table * sif_weights(len(kept), static.sif, kept_counts)[:, None]
    # No max_length of the teacher's: a table has no position limit (the tokenizer's, up to 512, applies).
    student = static_text_model(table, tokenizer, normalize=teacher.normalize, name=f"static student of {teacher.name}")
    return student, report
