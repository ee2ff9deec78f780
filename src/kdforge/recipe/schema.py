"""The recipe: a pydantic model of everything a run needs, validated before any model loads.

A recipe is one stage written flat (``teacher``, ``student``, ``task``, ``data``,
``methods``, ``training`` at the top level) or several ``stages``; top-level stage keys are
then defaults that each stage may override. A stage refers to an earlier stage's output
with ``stage:NAME`` wherever a model is expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kdforge.schedules import Schedulable

STAGE_KEYS = ("kind", "teacher", "teachers", "student", "task", "data", "methods", "training", "export", "knowledge")
STAGE_PREFIX = "stage:"
TEACHER_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


class StoreSpec(Strict):
    """Where and how a cached teacher's outputs are kept (kdforge/store)."""

    path: str | None = Field(
        None, description="store folder; default: $KDFORGE_STORE_DIR or ~/.cache/kdforge/stores, one per identity"
    )
    top_k: PositiveInt = Field(32, description="logits over more classes are kept as top-k log-probs + tail mass")
    layers: list[int] | Literal["auto"] = Field(
        "auto", description="hidden-state layers to keep (0 = embeddings); auto: the ones the methods read"
    )
    precision: Literal["fp16", "int8"] = Field("fp16", description="of hidden states and attention maps")
    shard_rows: PositiveInt = Field(4096, description="training rows per shard (the unit a killed build redoes)")
    verify: bool = Field(True, description="check every shard's SHA-256 when the store is opened")
    backend: Literal["local", "ray"] = Field(
        "local", description="ray: the teacher pass as Ray Data batch inference (pip install 'kdforge[ray]')"
    )
    workers: PositiveInt = Field(2, description="Ray actors, each with its own copy of the teacher")


class TeacherSpec(Strict):
    model: str = Field(description="alias (minilm), local folder, hub id, or stage:NAME")
    trust_remote_code: bool = False
    mode: Literal["online", "cached"] = Field(
        "online", description="cached: read teacher outputs from a knowledge store built once (kdforge store build)"
    )
    store: StoreSpec = Field(default_factory=StoreSpec)
    dtype: Literal["fp32", "bf16", "fp16", "int8"] = Field(
        "fp32", description="precision the teacher runs in; int8: dynamic quantization of its linear layers, CPU only"
    )
    device: str = Field("auto", description="auto (the training device), cpu, cuda or cuda:N")
    offload: bool = Field(
        False, description="keep the weights on the CPU and stream them onto the device layer by layer (huge teachers)"
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        if not TEACHER_DEVICE.fullmatch(value):
            raise ValueError(f"teacher device {value!r} is not one of: auto, cpu, cuda, cuda:N (N a GPU index)")
        return value

    @model_validator(mode="after")
    def _placement_fits(self) -> TeacherSpec:
        if self.dtype == "int8" and self.offload:
            raise ValueError("dtype int8 runs on the CPU, where the weights already are; drop 'offload'")
        if self.dtype == "int8" and self.device.startswith("cuda"):
            raise ValueError("dtype int8 (dynamic quantization) runs on the CPU only; use device cpu, or bf16/fp16")
        return self


class VocabularySpec(Strict):
    """GLMD's vocabulary compression (arXiv 2306.06625): the student keeps the special tokens and
    the most frequent tokens of the stage's training text, ``keep`` of the teacher's vocabulary.

    The size is rounded up to a multiple of ``multiple_of`` (GLM used 128). WordPiece only.
    """

    keep: float = Field(gt=0, le=1, description="fraction of the vocabulary the student keeps (paper: 0.5)")
    multiple_of: PositiveInt = 1

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, value: Any) -> Any:
        return {"keep": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class PQRNNSpec(Strict):
    """A pQRNN student (arXiv 2101.08890; kdforge/models/pqrnn.py): no embedding table. Each token
    of the teacher's tokenizer is hashed into ``features`` ternary projection features, a dense
    ``bottleneck`` layer follows, then ``layers`` bidirectional QRNN layers (state ``hidden`` per
    direction, gate convolution width ``kernel``, fo-pooling) and a head (attention pooling for
    classification, per token for tagging). The defaults stay under 227K parameters (100x under
    MiniLM) for up to 130 labels; the count does not depend on the vocabulary. ``compare_pairs``
    gives a classifier of text pairs InferSent's head on the two texts pooled apart; ``aligned``
    adds ESIM's comparison of each token with its soft alignment in the other text; ``exact_match``
    flags each token that the other text also holds (DIIN); ``word_overlap`` hands the classifier each
    text's share of such tokens.
    """

    features: PositiveInt = Field(512, description="ternary projection features per token (F)")
    bottleneck: PositiveInt | None = Field(
        None, description="width of the dense layer on the projection (B); default 2 H, the width of every layer"
    )
    hidden: PositiveInt = Field(56, description="QRNN state per direction (H); layers output 2 H")
    layers: PositiveInt = 2
    kernel: PositiveInt = Field(2, description="width of the gate convolutions (k)")
    dropout: float = Field(0.1, ge=0, lt=1)
    zoneout: float = Field(0.0, ge=0, lt=1, description="QRNN zoneout of the first layer (p^l for layer l)")
    seed: int = Field(0, description="seed of the token hash; a student is tied to it")
    compare_pairs: bool | Literal["aligned"] = Field(
        False,
        description="classifiers of text pairs: pool each text on its own and classify [u, v, |u - v|, u * v]; "
        "'aligned' adds what each text's tokens find in the other (soft alignment across the pair)",
    )
    exact_match: bool = Field(
        False,
        description="classifiers of text pairs: give each token a flag, 1 if the other text has the same token",
    )
    word_overlap: bool = Field(
        False,
        description="classifiers of text pairs: the classifier also reads each text's share of tokens the other holds",
    )


class StaticSpec(Strict):
    """A static-embedding student (kdforge/models/static.py): one vector per token, weighted mean pooling.

    ``init: teacher`` is the Model2Vec recipe (data-free): every vocabulary token embedded by
    the teacher, reduced to ``dims`` by PCA, scaled by a SIF weight ``sif / (sif + p(token))``
    with ``p`` from the training text's token frequencies. ``init: random``: random vectors
    (any ``dims``), SIF-scaled alike. ``student.vocabulary`` keeps only the frequent tokens.
    """

    dims: PositiveInt = Field(256, description="width of the token vectors; teacher init: at most the teacher's")
    init: Literal["teacher", "random"] = "teacher"
    sif: float = Field(1e-4, ge=0, lt=1, description="SIF coefficient a (Model2Vec's default); 0: no weighting")


class StudentSpec(Strict):
    """How to get the student: an existing model as it is, or cut from a model.

    Without ``model`` the student is cut from the teacher; with ``model`` and any of the cut
    fields it is cut from that model (a student pre-trained in an earlier stage, a checkpoint).
    ``layers`` are 0-based indices of the source's transformer blocks to keep; ``num_layers``
    keeps that many, picked evenly. A different ``hidden_size`` (or ``init: fresh``) gives
    fresh weights where shapes no longer match; ``vocabulary`` shrinks the vocabulary.
    """

    model: str | None = None
    layers: list[int] | None = None
    num_layers: PositiveInt | None = None
    hidden_size: PositiveInt | None = None
    intermediate_size: PositiveInt | None = None
    num_attention_heads: PositiveInt | None = None
    init: Literal["teacher", "fresh"] = Field("teacher", description="copy the source's weights, or fresh ones")
    config: dict[str, Any] | None = None
    vocabulary: VocabularySpec | None = None
    trust_remote_code: bool = False
    pqrnn: PQRNNSpec | None = Field(None, description="a pQRNN student instead of a transformer")
    static: StaticSpec | None = Field(None, description="a static-embedding student instead of a transformer")

    @property
    def architecture(self) -> str:
        return "pqrnn" if self.pqrnn is not None else "static" if self.static is not None else "transformer"

    @property
    def cuts(self) -> bool:
        """Whether the student is built from its source rather than used as it is."""
        fields = (
            self.layers,
            self.num_layers,
            self.hidden_size,
            self.intermediate_size,
            self.num_attention_heads,
            self.config,
            self.vocabulary,
            self.pqrnn,
            self.static,
        )
        return any(v is not None for v in fields) or self.init == "fresh"

    @model_validator(mode="after")
    def _consistent(self) -> StudentSpec:
        if self.layers is not None and self.num_layers is not None and len(self.layers) != self.num_layers:
            raise ValueError(f"'layers' has {len(self.layers)} entries but 'num_layers' is {self.num_layers}")
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise ValueError("'layers' must be a non-empty list of 0-based block indices")
        if self.pqrnn is not None and self.static is not None:
            raise ValueError("a student is either 'pqrnn' or 'static', not both")
        if self.architecture != "transformer":
            cut = ("layers", "num_layers", "hidden_size", "intermediate_size", "num_attention_heads", "config")
            given = [name for name in cut if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply to transformer students, not to a {self.architecture} one")
        return self


class DataSource(Strict):
    """One table of examples: a local file (or folder) or a hub dataset.

    Columns are found by name (``sentence``, ``sentence1``/``sentence2``, ``premise``/
    ``hypothesis``, ``label``, ``score`` ...) unless ``text``, ``text_pair``, ``label`` or
    ``score`` name them. ``format: auto`` picks the layout from the file; ``atis`` is a folder of
    line-aligned ``seq.in`` / ``seq.out`` / ``label`` files per split (ATIS, SNIPS); ``copa`` reads COPA
    (its XML or SuperGLUE JSONL) as premise + question vs. the two alternatives, ``copa_candidates`` as
    the two candidate sentences "premise because/so alternative" side by side (tasks/data.py);
    ``stage:NAME`` as the path trains on the sample store of a ``kind: knowledge`` stage.
    """

    path: str | None = None
    hub: str | None = None
    subset: str | None = None
    split: str | None = None
    format: Literal["auto", "stsb", "tsv", "csv", "jsonl", "text", "atis", "copa", "copa_candidates"] = "auto"
    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    score: str | None = None
    limit: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_origin(self) -> DataSource:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' or 'hub'")
        return self

    @field_validator("path")
    @classmethod
    def _exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value.startswith(STAGE_PREFIX):  # stage:NAME: a knowledge stage's sample store
            return value
        return str(resolve_path(value, (info.context or {}).get("base")))

    def describe(self) -> str:
        return self.path or f"hub:{self.hub}" + (f"[{self.split}]" if self.split else "")


class DataSpec(Strict):
    train: list[DataSource] = Field(default_factory=list)
    eval: DataSource | None = None
    test: DataSource | None = None

    @field_validator("train", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, dict)) else value


class TaskSpec(Strict):
    name: str = Field(
        description="sts | classification | token_classification | intent_slots | ranking | reranking | mlm | lm"
    )
    num_labels: PositiveInt | None = None
    labels: list[str] | None = None
    slot_labels: list[str] | None = Field(None, description="intent_slots: the slot tags in id order (labels: intents)")
    metric: str | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from kdforge.tasks import TASKS

        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; valid: {', '.join(TASKS.names())}")
        return value


class MethodSpec(BaseModel):
    """``{name, weight, teacher, ...args}``; the args are checked against the method's own schema.

    ``teacher`` picks which of the stage's teachers a single-teacher method learns from
    (0-based index into ``teachers``); multi-teacher methods read them all.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    weight: Schedulable = 1.0
    teacher: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _known_with_valid_args(self) -> MethodSpec:
        from kdforge.methods import METHODS

        if self.name not in METHODS:
            raise ValueError(f"unknown method {self.name!r}; valid: {', '.join(METHODS.names())}")
        METHODS.get(self.name).parse_args(self.args)
        return self

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AugmentSpec(Strict):
    """Perturbs a share of the training rows each epoch (kdforge/tasks/augment.py); the teacher labels
    them anew. Two perturbations, applied word by word: TinyBERT's word replacement (``probability``)
    and the character distortion of pQRNN's projection (``distortion``); set either to 0 to skip it.
    """

    share: float = Field(0.5, gt=0, le=1, description="fraction of the rows replaced by a perturbed copy each epoch")
    probability: float = Field(0.4, ge=0, le=1, description="chance that each word of such a row is replaced (p_t)")
    candidates: PositiveInt = Field(15, description="nearest words a replacement is drawn from (K)")
    distortion: float = Field(
        0.0, ge=0, le=1, description="chance that each word of such a row has a character deleted, moved or inserted"
    )

    @model_validator(mode="after")
    def _changes_something(self) -> AugmentSpec:
        if self.probability == 0 and self.distortion == 0:
            raise ValueError("'probability' and 'distortion' are both 0: augmentation would change nothing")
        return self


class TrainingSpec(Strict):
    epochs: PositiveFloat = 1.0
    max_steps: PositiveInt | None = None
    batch_size: PositiveInt = 32
    gradient_accumulation: PositiveInt = 1
    lr: PositiveFloat = 5e-5
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = 1.0
    bf16: bool = False
    max_length: PositiveInt | None = None
    save_every: PositiveInt = 500
    keep_checkpoints: PositiveInt = 2
    log_every: PositiveInt = 10
    teacher_cache: Literal["auto", "off"] = Field(
        "auto", description="keep sentence-level teacher outputs in memory after their first use"
    )
    length_grouping: bool = Field(
        True, description="batch examples of similar length together (less padding, same data per epoch)"
    )
    seed: int | None = None
    augment: AugmentSpec | None = Field(
        None, description="perturb training rows (words replaced or misspelt); the first teacher labels them anew"
    )


class KnowledgeSpec(Strict):
    """What a ``kind: knowledge`` stage writes into its sample store (RetriKT, arXiv 2310.15594).

    ``source: encoder``: the teacher (a classifier) labels every training example and ``copies``
    perturbed copies of it (``augment``: word replacement / character distortion), plus any
    ``unlabeled`` in-domain text. ``source:
    generative``: the teacher is a causal LM; soft prompts are tuned on the labelled examples
    (step 1), refined with PPO (step 2), then ``per_label`` samples per label are generated and
    labelled by the teacher itself (``label_words`` verbalize the labels).
    """

    source: Literal["encoder", "generative"] = "encoder"
    copies: PositiveInt = Field(10, description="encoder: perturbed copies of each training example")
    augment: AugmentSpec = Field(
        default_factory=lambda: AugmentSpec(share=1.0, probability=0.3),
        description="encoder: how copies are perturbed (share is ignored: every copy is perturbed)",
    )
    unlabeled: list[DataSource] = Field(
        default_factory=list,
        description="encoder: in-domain texts without labels, added as they are (the teacher's argmax is their label)",
    )
    label_words: list[str] | None = Field(None, description="generative: one word per label, in label order")
    per_label: PositiveInt = Field(200, description="generative: samples generated for each label")
    prompt_tokens: PositiveInt = Field(8, description="generative: soft prompt length")
    prompt_epochs: PositiveInt = Field(5, description="generative: epochs of soft-prompt tuning (step 1)")
    ppo_steps: int = Field(20, ge=0, description="generative: PPO steps on the prompt (step 2); 0 skips it")
    max_new_tokens: PositiveInt = Field(32, description="generative: longest sample")

    @field_validator("unlabeled", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, dict)) else value


#: The method a distill stage uses when it lists none (any other task: ``kd``).
DEFAULT_DISTILL_METHOD = {"sts": "embedding_mse", "ranking": "margin_mse"}
#: Tasks whose model has two heads: a default method is applied to each head's view.
HEAD_VIEWS = {"intent_slots": ("logits", "token_logits")}


class StageSpec(Strict):
    name: str = "distill"
    kind: Literal["distill", "finetune", "knowledge"] = "distill"
    teacher: TeacherSpec | None = None
    teachers: list[TeacherSpec] = Field(default_factory=list)
    student: StudentSpec = Field(default_factory=StudentSpec)
    task: TaskSpec
    data: DataSpec
    methods: list[MethodSpec] = Field(default_factory=list)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    export: list[Literal["hf", "sentence-transformers", "static-table", "onnx", "onnx-int8"]] | None = None
    knowledge: KnowledgeSpec | None = Field(None, description="kind knowledge: the samples its store gets")

    @field_validator("teacher", mode="before")
    @classmethod
    def _teacher_from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @field_validator("teachers", mode="before")
    @classmethod
    def _teachers_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"model": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("student", mode="before")
    @classmethod
    def _student_from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kind_rules(self) -> StageSpec:
        if self.teacher is not None and self.teachers and self.teachers != [self.teacher]:
            raise ValueError("give 'teacher' or 'teachers', not both")
        if self.teachers:
            self.teacher = self.teachers[0]
        elif self.teacher is not None:
            self.teachers = [self.teacher]
        if self.kind == "knowledge":
            if self.teacher is None:
                raise ValueError("a knowledge stage needs a 'teacher' (the model whose predictions fill the store)")
            if self.methods:
                raise ValueError("a knowledge stage trains nothing and takes no 'methods'")
            if self.knowledge is None:
                self.knowledge = KnowledgeSpec()
            if self.knowledge.source == "generative" and not self.knowledge.label_words:
                raise ValueError("knowledge.source generative needs 'label_words' (one word per label)")
        elif self.knowledge is not None:
            raise ValueError(f"'knowledge' belongs to a 'kind: knowledge' stage, not a {self.kind} stage")
        if self.kind == "finetune":
            if self.teacher is not None:
                raise ValueError("a finetune stage trains 'student.model' on labels and takes no teacher")
            if not self.student.model:
                raise ValueError("a finetune stage needs 'student.model' (the backbone to fine-tune)")
            if not self.methods:
                # language-modelling tasks train on their own targets (masked or next tokens)
                self.methods = _per_head("mlm" if self.task.name in ("mlm", "lm") else "ce", self.task.name)
        elif self.kind == "distill":
            if self.teacher is None:
                raise ValueError("a distill stage needs a 'teacher'")
            if not self.methods:
                self.methods = _per_head(DEFAULT_DISTILL_METHOD.get(self.task.name, "kd"), self.task.name)
        if not self.data.train:
            raise ValueError("data.train is empty: give at least one training source")
        for j, method in enumerate(self.methods):
            if self.teachers and method.teacher >= len(self.teachers):
                raise ValueError(
                    f"methods[{j}] ({method.name}) reads teacher {method.teacher}, but the stage has "
                    f"{len(self.teachers)} teacher(s) (0-based)"
                )
        return self


def _per_head(method: str, task: str) -> list[MethodSpec]:
    """The default ``method``, once per head of the task's model (intent_slots: ``ce`` on intents and slots)."""
    views = HEAD_VIEWS.get(task)
    if views is None:
        return [MethodSpec(name=method)]
    return [MethodSpec.model_validate({"name": method, "view": view}) for view in views]


class OutputSpec(Strict):
    dir: str | None = None
    export: bool = True
    benchmark: bool = Field(True, description="measure teacher and student throughput at the end")


class Recipe(Strict):
    name: str = "kdforge-run"
    seed: int = 42
    stages: list[StageSpec]
    output: OutputSpec = Field(default_factory=OutputSpec)

    @model_validator(mode="before")
    @classmethod
    def _stage_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        defaults = {k: data.pop(k) for k in STAGE_KEYS if k in data}
        stages = data.get("stages")
        if stages is None:
            data["stages"] = [defaults]
        elif isinstance(stages, list):
            data["stages"] = [_merge(_defaults_for(defaults, s), s) if isinstance(s, dict) else s for s in stages]
        return data

    @model_validator(mode="after")
    def _stage_references(self) -> Recipe:
        seen: list[str] = []
        knowledge: list[str] = []  # stages whose output is a sample store, not a model
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"two stages are named {stage.name!r}; stage names must be unique")
            stored = [s.path for s in stage.data.train if s.path and s.path.startswith(STAGE_PREFIX)]
            for ref in stored:
                if ref[len(STAGE_PREFIX) :] not in knowledge:
                    raise ValueError(
                        f"stage {stage.name!r} trains on {ref!r}, but no earlier 'kind: knowledge' stage has that "
                        f"name (earlier knowledge stages: {', '.join(knowledge) or 'none'})"
                    )
            for model in (*(t.model for t in stage.teachers), stage.student.model):
                if model and model.startswith(STAGE_PREFIX) and model[len(STAGE_PREFIX) :] in knowledge:
                    raise ValueError(
                        f"stage {stage.name!r} uses {model!r} as a model, but that stage writes a sample store; "
                        "train on it instead (data.train: " + model + ")"
                    )
                if model and model.startswith(STAGE_PREFIX) and model[len(STAGE_PREFIX) :] not in seen:
                    raise ValueError(
                        f"stage {stage.name!r} refers to {model!r}, but no earlier stage has that name "
                        f"(earlier: {', '.join(seen) or 'none'})"
                    )
            seen.append(stage.name)
            if stage.kind == "knowledge":
                knowledge.append(stage.name)
        return self

    @property
    def is_flat(self) -> bool:
        return len(self.stages) == 1

    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        from kdforge.recipe.loading import load_recipe

        return load_recipe(path)


def _defaults_for(defaults: dict, stage: dict) -> dict:
    """A finetune stage has no teacher; a stage naming its teacher(s) does not inherit the other key."""
    if stage.get("kind") == "knowledge":  # it trains nothing: the recipe's methods are not its own
        defaults = {k: v for k, v in defaults.items() if k != "methods"}
    if stage.get("kind") == "finetune":
        return {k: v for k, v in defaults.items() if k not in ("teacher", "teachers")}
    if "teacher" in stage or "teachers" in stage:
        return {k: v for k, v in defaults.items() if k not in ("teacher", "teachers")}
    return defaults


def _merge(defaults: dict, override: dict) -> dict:
    """Stage keys override the recipe's defaults; nested mappings merge one level deep."""
    merged = dict(defaults)
    for key, value in override.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` in paths, so recipes travel between machines."""
    return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)


def resolve_path(value: str, base: str | None) -> Path:
    """A path as written, relative to the working directory, else to the recipe's folder."""
    path = Path(expand_env(value)).expanduser()
    tried = [path]
    if path.exists():
        return path.resolve()
    if not path.is_absolute() and base:
        alt = Path(base) / path
        if alt.resolve() != path.resolve():
            tried.append(alt)
        if alt.exists():
            return alt.resolve()
    raise ValueError(f"no such file or folder: {' or '.join(str(t) for t in tried)}")
