"""Vocabulary compression: a student that keeps only the frequent part of its teacher's vocabulary.

GLMD (Tan et al., "Are Intermediate Layers and Labels Really Necessary? A General Language
Model Distillation Method", arXiv 2306.06625) shrinks the vocabulary's size, not its width:
token frequencies are long-tailed, so most embedding rows are rarely used. The rule, as the
reference code (aitsc/GLMKD, ``vocab_sort.py``, ``build_map_vocab_for_student``) applies it:

- keep every special token, then the tokens of the training text by descending frequency
  (ties: lower id first), until ``K = keep * V`` tokens (rounded up to ``multiple_of``);
- a dropped token becomes the student's ``[UNK]`` in the student's inputs;
- the teacher's logits are cut to the kept ids and renormalised over them, so the probability
  mass of the dropped tokens is discarded, not given to ``[UNK]`` (``--distill_logit_mask_map``).

The student keeps the kept ids in the teacher's order, so ``[PAD]``, ``[CLS]`` ... keep their
relative place. Its tokenizer is the teacher's WordPiece restricted to the kept tokens: a plain
tokenizer any user can load. On text whose teacher tokens are all kept it gives exactly the ids
the student was trained on; a word with a dropped piece is split into kept pieces instead of
becoming ``[UNK]`` (a WordPiece vocabulary cannot express "this string is [UNK]").
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from kdforge.errors import ModelError

IGNORE = -100
#: Config fields that hold token ids, remapped when the vocabulary shrinks.
_CONFIG_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


@dataclass(frozen=True)
class VocabularyMap:
    """How a compressed student's token ids relate to its teacher's."""

    kept: Tensor  # [K] the teacher id of each student id
    to_student: Tensor  # [V] the student id of each teacher id; dropped ids -> the student's [UNK]

    @property
    def size(self) -> int:
        return int(self.kept.numel())

    def student_ids(self, ids: Tensor) -> Tensor:
        """Teacher ids as student ids; ignored targets (-100) stay ignored."""
        ignored = ids == IGNORE
        mapped = self.to_student.to(ids.device)[ids.masked_fill(ignored, 0)]
        return mapped.masked_fill(ignored, IGNORE)

    def teacher_logits(self, logits: Tensor) -> Tensor:
        """Teacher logits ``[..., V]`` restricted to the kept ids ``[..., K]``, in student order."""
        return logits.index_select(-1, self.kept.to(logits.device))


def token_counts(tokenizer, texts: Sequence[str], batch_size: int = 1024) -> Tensor:
    """How often each of the tokenizer's ids occurs in ``texts`` (special tokens not added)."""
    counts = torch.zeros(len(tokenizer), dtype=torch.long)
    texts = list(texts)
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start : start + batch_size], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([i for row in encoded for i in row], dtype=torch.long)
        counts += torch.bincount(ids, minlength=len(counts))[: len(counts)]
    return counts


def choose_kept(counts: Tensor, special_ids: Sequence[int], keep: float, multiple_of: int = 1) -> list[int]:
    """The teacher ids a student keeps, ascending: all special ids, then the most frequent ones.

    ``K = ceil(keep * V / multiple_of) * multiple_of``; a ``K`` of ``V`` or more keeps everything.
    """
    size = len(counts)
    target = math.ceil(int(keep * size) / multiple_of) * multiple_of
    if target >= size:
        return list(range(size))
    must = sorted(set(special_ids))
    if target < len(must):
        raise ModelError(
            f"student.vocabulary keeps {target} tokens, fewer than the {len(must)} special tokens; raise 'keep'"
        )
    order = torch.sort(-counts, stable=True).indices.tolist()  # most frequent first, ties by id
    special = set(must)
    others = [i for i in order if i not in special][: target - len(must)]
    return sorted(must + others)


def reduced_tokenizer(tokenizer, kept: Sequence[int]):
    """The teacher's tokenizer restricted to ``kept`` (teacher ids), renumbered 0..K-1 in that order.

    Only WordPiece tokenizers (BERT, DistilBERT, MiniLM, ELECTRA ...) can be restricted without
    changing how the kept tokens are found; BPE and Unigram vocabularies are refused.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model_type = spec.get("model", {}).get("type")
    if model_type != "WordPiece":
        raise ModelError(
            f"student.vocabulary needs a WordPiece tokenizer (BERT family); this teacher's is "
            f"{model_type or type(tokenizer).__name__}"
        )
    new_id = {old: new for new, old in enumerate(kept)}
    by_id = {i: token for token, i in spec["model"]["vocab"].items()}
    spec["model"]["vocab"] = {by_id[old]: new for old, new in new_id.items()}
    spec["added_tokens"] = [dict(t, id=new_id[t["id"]]) for t in spec.get("added_tokens", []) if t["id"] in new_id]
    spec["post_processor"] = _remap_processor(spec.get("post_processor"), new_id)
    if spec.get("padding") and spec["padding"].get("pad_id") in new_id:
        spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(spec))
        config = Path(tmp) / "tokenizer_config.json"
        if config.is_file():  # ids of added tokens recorded there belong to the old numbering
            settings = json.loads(config.read_text())
            settings.pop("added_tokens_decoder", None)
            config.write_text(json.dumps(settings))
        for stale in ("vocab.txt", "added_tokens.json"):
            (Path(tmp) / stale).unlink(missing_ok=True)
        return type(tokenizer).from_pretrained(tmp)


def _remap_processor(processor: dict | None, new_id: dict[int, int]) -> dict | None:
    """Special-token ids inside a post-processor (TemplateProcessing, BertProcessing, Sequence)."""
    if processor is None:
        return None
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, old = processor[key]
            processor[key] = [token, new_id[old]]
    elif kind == "Sequence":
        processor["processors"] = [_remap_processor(p, new_id) for p in processor["processors"]]
    return processor


def cut_vocabulary(hf: nn.Module, kept: Sequence[int]) -> None:
    """Keep only the ``kept`` rows (teacher ids, in student order) of the input embeddings and LM head.

    Rows are moved to the front and the tables shrunk with ``resize_token_embeddings``, so tied
    weights stay tied and the model saves and loads as a plain HF model of vocabulary ``K``.
    """
    size = hf.get_input_embeddings().weight.shape[0]
    chosen = torch.tensor(list(kept), dtype=torch.long)
    rest = torch.ones(size, dtype=torch.bool)
    rest[chosen] = False
    order = torch.cat([chosen, rest.nonzero().flatten()])
    moved: set[int] = set()
    for module in (hf.get_input_embeddings(), hf.get_output_embeddings()):
        for param in module.parameters() if module is not None else ():
            if id(param) not in moved and param.shape[0] == size:
                moved.add(id(param))
                param.data = param.data[order].contiguous()
    to_student = torch.full((size,), -1, dtype=torch.long)
    to_student[chosen] = torch.arange(len(chosen))
    config = hf.config
    for key in _CONFIG_IDS:
        old = getattr(config, key, None)
        if isinstance(old, int) and 0 <= old < size:
            setattr(config, key, int(to_student[old]) if to_student[old] >= 0 else None)
    hf.resize_token_embeddings(len(chosen), mean_resizing=False)
    embeddings = hf.get_input_embeddings()
    if getattr(embeddings, "padding_idx", None) is not None:
        embeddings.padding_idx = getattr(config, "pad_token_id", None)


def compress_vocabulary(hf: nn.Module, tokenizer, texts: Sequence[str], keep: float, multiple_of: int = 1):
    """Shrink ``hf`` (in place) to the tokens GLMD keeps; returns the student's tokenizer.

    The tokenizer is returned unchanged when the rule keeps the whole vocabulary.
    """
    kept = choose_kept(token_counts(tokenizer, texts), tokenizer.all_special_ids, keep, multiple_of)
    if len(kept) >= len(tokenizer):
        return tokenizer
    student_tokenizer = reduced_tokenizer(tokenizer, kept)
    cut_vocabulary(hf, kept)
    return student_tokenizer


def vocabulary_map(teacher_tokenizer, student_tokenizer) -> VocabularyMap | None:
    """The map when the student's vocabulary is a compressed copy of the teacher's, else ``None``.

    Compressed means: the same tokenizer class and casing, and a strictly smaller vocabulary
    whose every token is one of the teacher's. Nothing else needs to be stored with the student.
    """
    t, s = teacher_tokenizer, student_tokenizer
    if type(t).__name__ != type(s).__name__ or getattr(t, "do_lower_case", None) != getattr(s, "do_lower_case", None):
        return None
    if s.unk_token_id is None:
        return None
    t_vocab, s_vocab = t.get_vocab(), s.get_vocab()
    if len(s_vocab) >= len(t_vocab) or sorted(s_vocab.values()) != list(range(len(s_vocab))):
        return None
    if any(token not in t_vocab for token in s_vocab):
        return None
    kept = torch.tensor([t_vocab[token] for token in sorted(s_vocab, key=s_vocab.__getitem__)], dtype=torch.long)
    to_student = torch.full((max(t_vocab.values()) + 1,), s.unk_token_id, dtype=torch.long)
    to_student[kept] = torch.arange(len(kept))
    return VocabularyMap(kept=kept, to_student=to_student)
