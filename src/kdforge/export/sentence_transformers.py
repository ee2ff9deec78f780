"""Export an embedding model as a sentence-transformers folder: ``SentenceTransformer(path)``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from kdforge.errors import ModelError
from kdforge.export.hf import save_hf
from kdforge.models.loading import META_FILE
from kdforge.models.text_model import TextModel


def save_sentence_transformer(model: TextModel, path: str | Path) -> Path:
    """Transformer + Pooling (+ Normalize) modules, built and saved by sentence-transformers itself
    (a static-embedding student: StaticEmbedding + Normalize, kdforge/export/static.py)."""
    if model.kind != "embedding":
        raise ModelError("only embedding models export as sentence-transformers folders; use format 'hf'")
    from kdforge.export.static import is_static, save_static_sentence_transformer

    if is_static(model):
        return save_static_sentence_transformer(model, path)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(model, tmp)
        transformer = Transformer(tmp, max_seq_length=model.max_length)
        modules = [transformer, Pooling(model.hidden_size, pooling_mode=model.pooling)]
        if model.normalize:
            modules.append(Normalize())
        st = SentenceTransformer(modules=modules, device="cpu")
        if path.exists():
            shutil.rmtree(path)
        st.save(str(path))
        shutil.copy(Path(tmp) / META_FILE, path / META_FILE)
    return path
