"""Export a static-embedding student: as a sentence-transformers folder, or as a plain table.

Both carry the table and the tokenizer; neither needs kdforge to load. Both tokenizers truncate
at the student's ``max_length``, as kdforge does, so every loader gives the same vectors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file
from tokenizers import Tokenizer

from kdforge.errors import ModelError
from kdforge.export.hf import write_meta
from kdforge.models.static import TABLE_CONFIG, TABLE_KEY, TABLE_WEIGHTS, StaticEmbeddingModel
from kdforge.models.text_model import TextModel


def is_static(model: TextModel) -> bool:
    return isinstance(model.hf, StaticEmbeddingModel)


def _table(model: TextModel):
    if not is_static(model):
        raise ModelError("only static-embedding students export as a static table; use format 'hf'")
    return model.hf.get_input_embeddings().weight.detach().float().cpu().contiguous()


def _backend_tokenizer(model: TextModel) -> Tokenizer:
    """A copy of the Rust tokenizer: no padding, truncation at the student's ``max_length``."""
    backend = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(model.max_length)
    return backend


def save_static_sentence_transformer(model: TextModel, path: str | Path) -> Path:
    """sentence-transformers' ``StaticEmbedding`` (+ ``Normalize``): ``SentenceTransformer(path)``.

    ``StaticEmbedding`` tokenizes without special tokens and averages the token vectors, which is
    what the student computes.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    modules = [StaticEmbedding(_backend_tokenizer(model), embedding_weights=_table(model))]
    if model.normalize:
        modules.append(Normalize())
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    SentenceTransformer(modules=modules, device="cpu").save(str(path))
    write_meta(model, path)
    return path


def save_static_table(model: TextModel, path: str | Path) -> Path:
    """The table alone: ``model.safetensors`` (one tensor, ``embeddings`` ``[vocabulary, dims]``),
    ``tokenizer.json`` and a ``config.json``, in Model2Vec's layout.

    Any safetensors reader gets the table; a sentence vector is the mean of the rows of its token
    ids (tokenized without special tokens), L2-normalized when ``config.json`` says ``normalize``.
    ``model2vec.StaticModel.from_pretrained(path)`` loads the folder as it is (it also drops
    ``[UNK]`` tokens from the mean, which kdforge and sentence-transformers keep).
    """
    table = _table(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({TABLE_KEY: table}, str(path / TABLE_WEIGHTS))
    _backend_tokenizer(model).save(str(path / "tokenizer.json"))
    config = {
        "model_type": "model2vec",
        "architectures": ["StaticModel"],
        "hidden_dim": table.shape[1],
        "normalize": model.normalize,
        "max_length": model.max_length,
        "embedding_dtype": "float32",
        "pooling": "mean",
        "exported_by": "kdforge",
    }
    (path / TABLE_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    write_meta(model, path)
    return path
