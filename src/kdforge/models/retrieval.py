"""A student that searches a sample store of its teacher's knowledge (RetriKT, arXiv 2310.15594).

Sec. 3.3 of the paper: a student about 1% of its teacher's size cannot hold the teacher's
knowledge in its weights, so it learns to *retrieve* it. For an input ``x`` with student
sentence embedding ``e(x)`` and logits ``z(x)``:

    s_i   = cos(e(x), key_i)                        for the k nearest store samples i
    w_i   = softmax_i(s_i / tau)
    p_R   = sum_i w_i * p_T(sample_i)               the retrieved teacher distributions
    p(x)  = lambda * softmax(z(x)) + (1 - lambda) * p_R

``e`` is the student's sentence embedding (``key: embedding``, the paper's), the features its
output layer reads (``key: features``: neighbours are then samples the student's classifier sees
alike), or a pair's word overlap (``key: overlap``: neighbours are pairs whose texts share as much,
coded by ``overlap_key``; nothing learned); ``key_i`` is ``e`` of sample ``i`` (recomputed as the
student trains, kept fixed between refreshes); ``lambda = sigmoid(m)`` is learned with the student,
or re-fitted after training on store examples kept out of it (``hold_out``, ``tune_mix``): a student
that memorises its training rows learns to trust itself there more than it should elsewhere.
Gradients reach the student through ``z`` and through ``e(x)`` in ``s_i``, which is how it learns
to retrieve. The k neighbours themselves come from a FAISS inner-product index on the keys.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from kdforge.errors import ModelError, StoreError
from kdforge.models.views import RETRIEVAL_KEYS
from kdforge.store.samples import SampleStore, open_samples

if TYPE_CHECKING:
    from kdforge.models.text_model import TextModel

SETTINGS = "retrieval.json"
FOLDER = "retrieval"  # inside a saved student's folder
OVERLAP_BINS, OVERLAP_WIDTH = 11, 0.1  # ``overlap_key``: Gaussian bumps every 0.1 along [0, 1]
MIX_GRID = 101  # ``tune_mix`` tries lambda = 0, 0.01, ..., 1


def overlap_key(shares: Tensor) -> Tensor:
    """``[B, 2]`` overlap shares to unit rows ``[B, 2 * OVERLAP_BINS]`` whose inner product falls off
    with the distance between the shares, ``exp(-d^2 / (4 w^2))`` per share, averaged over the two:
    each share coded by Gaussian bumps along [0, 1]. Cosine search on the two raw numbers would compare
    only their ratio."""
    centres = torch.linspace(0.0, 1.0, OVERLAP_BINS, device=shares.device)
    code = torch.exp(-((shares.float().unsqueeze(-1) - centres) ** 2) / (2 * OVERLAP_WIDTH**2))
    return F.normalize(code, dim=-1).flatten(-2) / math.sqrt(shares.shape[-1])


class RetrievalHead(nn.Module):
    """The search half of a retrieving student: the store, its index and the mixing weight."""

    def __init__(
        self, store: SampleStore, k: int = 16, temperature: float = 0.05, mix: float = 0.5, key: str = "embedding"
    ) -> None:
        super().__init__()
        if not 0 < mix < 1:
            raise ValueError(f"the initial mixing weight must lie in (0, 1), got {mix}")
        if key not in RETRIEVAL_KEYS:
            raise ValueError(f"the retrieval key is one of {', '.join(RETRIEVAL_KEYS)}, got {key!r}")
        self.store = store
        self.key = key
        self.k = k
        self.temperature = temperature
        self.mix_logit = nn.Parameter(torch.tensor(math.log(mix / (1 - mix))))
        self.register_buffer("probs", store.probs.float(), persistent=False)
        self.register_buffer("sources", store.sources, persistent=False)
        # the most samples one training example has in the store: what a search must skip at worst
        self.max_siblings = int(torch.unique(store.sources, return_counts=True)[1].max())
        self.keys: Tensor | None = None
        self.index: faiss.Index | None = None
        self.held_out: Tensor | None = None  # [N] bool: store rows kept out of training (``hold_out``)
        self.tuned: dict | None = None  # what ``tune_mix`` found, saved with the settings

    @property
    def mix(self) -> Tensor:
        """lambda: the share of the student's own distribution in its prediction."""
        return torch.sigmoid(self.mix_logit)

    # ----- keys and index -------------------------------------------------------------------
    @torch.no_grad()
    def refresh(self, model: TextModel, batch_size: int = 128) -> None:
        """Key every sample with the student as it is now, and index the keys."""
        if self.key == "overlap" and self.index is not None:
            return  # a pair's overlap does not change as the student trains
        keys = model.rows(self.key, self.store.texts, self.store.pairs, batch_size=batch_size)
        self.set_keys(self.coded(keys))

    def coded(self, rows: Tensor) -> Tensor:
        """What the index searches for a view's rows: the rows themselves, or ``overlap_key`` of shares."""
        return overlap_key(rows) if self.key == "overlap" else rows

    def set_keys(self, keys: Tensor) -> None:
        if keys.shape[0] != len(self.store):
            raise StoreError(f"{self.store.folder}: {keys.shape[0]} keys for {len(self.store)} samples")
        keys = F.normalize(keys.float(), dim=-1).cpu().contiguous()
        index = faiss.IndexFlatIP(keys.shape[1])
        index.add(keys.numpy())
        self.keys, self.index = keys, index

    # ----- retrieval ------------------------------------------------------------------------
    def neighbours(self, queries: Tensor, exclude: Tensor | None = None) -> Tensor:
        """The ``k`` nearest samples of each query ``[B, k]``; samples whose ``source`` equals the
        query's ``exclude`` value (itself and its perturbed siblings while training) are skipped."""
        if self.index is None:
            raise ModelError("the retrieval index is empty: refresh() it with the student first")
        extra = 0 if exclude is None else self.max_siblings
        found = min(len(self.store), self.k + extra)
        q = F.normalize(queries.detach().float(), dim=-1).cpu().contiguous().numpy()
        _, ids = self.index.search(q, found)
        ids_t = torch.from_numpy(ids.astype(np.int64))
        if exclude is None:
            return ids_t[:, : self.k]
        keep = (self.sources[ids_t.clamp_min(0)].cpu() != exclude.cpu().unsqueeze(1)) & (ids_t >= 0)
        # the first k kept ids of each row, in rank order (a stable sort puts the kept ones first); a store
        # smaller than k + siblings leaves fewer: the last kept one stands in for the missing ones
        first = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
        slots = torch.minimum(torch.arange(self.k), (keep.sum(1, keepdim=True) - 1).clamp_min(0))
        return ids_t.gather(1, first.gather(1, slots))

    def retrieved(self, embedding: Tensor, exclude: Tensor | None = None) -> Tensor:
        """p_R ``[B, C]``: the similarity-weighted teacher distributions of the neighbours."""
        query = self.coded(embedding)
        ids = self.neighbours(query, exclude).to(embedding.device)
        keys = self.keys.to(embedding.device)[ids]  # [B, k, D], fixed
        sims = torch.einsum("bd,bkd->bk", F.normalize(query.float(), dim=-1), keys)
        weights = torch.softmax(sims / self.temperature, dim=-1)
        return torch.einsum("bk,bkc->bc", weights, self.probs.to(embedding.device)[ids])

    def log_probs(self, logits: Tensor, embedding: Tensor, exclude: Tensor | None = None) -> Tensor:
        """log p(x): the student's distribution mixed with the retrieved one (module docstring)."""
        mixed = self.mix * torch.softmax(logits.float(), dim=-1) + (1 - self.mix) * self.retrieved(embedding, exclude)
        return torch.log(mixed.clamp_min(1e-12))

    # ----- a mixing weight fitted on examples the student never trained on ------------------
    def hold_out(self, share: float, seed: int = 0) -> None:
        """Keep ``share`` of the store's training examples, every sample derived from each, out of
        training (the method leaves their rows out of its loss), for ``tune_mix``."""
        sources = torch.unique(self.sources)
        count = round(share * len(sources))
        if not 0 < count < len(sources):
            raise ValueError(
                f"holding out {share} of {len(sources)} training examples leaves {count} to tune on and "
                f"{len(sources) - count} to train on; both need at least one"
            )
        order = torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed))
        self.held_out = torch.isin(self.sources.cpu(), sources.cpu()[order[:count]])

    @torch.no_grad()
    def tune_mix(self, model: TextModel, batch_size: int = 128) -> dict:
        """Set lambda to the value on a grid whose mixture is closest to the teacher, ``KL(p_T || p)``, on
        the held-out rows (each retrieving without its own siblings, as in training); returns the fit."""
        if self.held_out is None:
            raise ModelError("tune_mix needs held-out store rows: call hold_out() before training")
        rows = self.held_out.nonzero().squeeze(1)
        texts = [self.store.texts[i] for i in rows.tolist()]
        pairs = None if self.store.pairs is None else [self.store.pairs[i] for i in rows.tolist()]
        own = torch.softmax(model.rows("logits", texts, pairs, batch_size).float(), dim=-1)
        retrieved = self.retrieved(model.rows(self.key, texts, pairs, batch_size), self.sources[rows]).cpu()
        teacher = self.probs[rows].cpu()
        grid = torch.linspace(0.0, 1.0, MIX_GRID)
        mixed = grid[:, None, None] * own + (1 - grid[:, None, None]) * retrieved  # [G, N, C]
        kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - torch.log(mixed.clamp_min(1e-12)))).sum(-1).mean(-1)
        best = int(kl.argmin())
        learned = float(self.mix)
        mix = min(max(float(grid[best]), 1e-4), 1 - 1e-4)  # the logit stays finite
        self.mix_logit.data.fill_(math.log(mix / (1 - mix)))
        agrees = teacher.argmax(-1)
        self.tuned = {
            "held_out_rows": len(rows),
            "learned_mix": round(learned, 4),
            "mix": round(mix, 4),
            "kl": round(float(kl[best]), 5),
            "teacher_agreement": {
                "own": round(float((own.argmax(-1) == agrees).float().mean()), 4),
                "retrieved": round(float((retrieved.argmax(-1) == agrees).float().mean()), 4),
                "mixed": round(float((mixed[best].argmax(-1) == agrees).float().mean()), 4),
            },
        }
        return self.tuned

    # ----- folders --------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """The store, its keys, the index and the settings, inside a student's folder."""
        if self.keys is None or self.index is None:
            raise ModelError("refresh() the retrieval index before saving the student")
        folder = Path(folder)
        store = folder / "store"
        if store.resolve() != self.store.folder.resolve():
            _copy_store(self.store.folder, store)
        faiss.write_index(self.index, str(store / "index.faiss"))
        keys_file = store / "keys.safetensors"
        if isinstance(self.index, faiss.IndexFlat):  # the index holds the keys themselves: not written twice
            keys_file.unlink(missing_ok=True)
        else:
            save_file({"keys": self.keys}, str(keys_file))
        settings = {"k": self.k, "temperature": self.temperature, "mix": float(self.mix.detach()), "key": self.key}
        if self.tuned is not None:
            settings["tuned"] = self.tuned
        (folder / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RetrievalHead:
        folder = Path(folder)
        try:
            settings = json.loads((folder / SETTINGS).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"{folder / SETTINGS}: unreadable retrieval settings ({err})") from None
        store = open_samples(folder / "store")
        mix = min(max(settings["mix"], 1e-6), 1 - 1e-6)
        head = cls(store, settings["k"], settings["temperature"], mix, settings.get("key", "embedding"))
        head.tuned = settings.get("tuned")
        keys_file, index_file = folder / "store" / "keys.safetensors", folder / "store" / "index.faiss"
        index = faiss.read_index(str(index_file)) if index_file.is_file() else None
        if keys_file.is_file():
            keys = load_file(str(keys_file))["keys"]
        elif isinstance(index, faiss.IndexFlat):
            keys = torch.from_numpy(index.reconstruct_n(0, index.ntotal))
        else:
            raise StoreError(f"{folder / 'store'}: no index.faiss or keys.safetensors; the student's store has no keys")
        if index is None or index.ntotal != keys.shape[0]:
            head.set_keys(keys)  # no index shipped (or a stale one): rebuilt from the keys, exactly
        else:
            head.keys, head.index = F.normalize(keys.float(), dim=-1), index
        return head


def _copy_store(source: Path, target: Path) -> None:
    import shutil

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("keys.safetensors", "index.faiss"))


def has_retrieval(folder: str | Path) -> bool:
    return (Path(folder) / FOLDER / SETTINGS).is_file()
