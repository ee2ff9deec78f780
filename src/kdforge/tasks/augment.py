"""Data augmentation: more inputs, close to the real ones, on which to imitate the teacher.

Word replacement: Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding",
arXiv 1909.10351, Sec. 3.1 and Algorithm 1: every word ``w`` of a sentence is replaced, with
probability ``p_t``, by one of its ``K`` nearest candidates; the teacher then labels the new
sentence, so only teacher-driven methods (``kd``, ``hidden_mse`` ...) should train on it. The paper
takes the candidates of single-piece words from BERT's masked-LM predictions and of other words from
GloVe. kdforge has neither offline, and must work with any teacher, so it takes them from the
teacher's own input embedding table: the ``K`` whole-word tokens with the highest cosine
similarity (for MiniLM, "boring" -> bored, dull, bland ...; "funny" -> hilarious, humorous ...).
Words that the tokenizer splits into several pieces, and single letters, are left as they are.

Character distortion: the projection of PRADO and pQRNN (Kaliamoorthi et al., arXiv 2101.08890;
``distortion_probability`` of seq_flow_lite's ``SequenceStringProjection``, its ``TextDistorter``)
distorts each word during training with some probability by one edit, each with chance 1/3: a
character deleted, a character moved elsewhere in the word, or a character inserted (the reference
inserts the last deleted one; here a letter drawn from the same sentence). Misspelt words tokenize
into other pieces, which teaches a hashed-feature student not to lean on exact tokens. The pQRNN
paper's own augmentation, paraphrases by round-trip translation through pivot languages, needs a
translation model; such paraphrases, written ahead, can simply be added as training data: the
teacher labels them like any row when the methods are teacher-driven.

The TinyBERT paper writes ``N_a`` augmented copies of the corpus ahead of training. Here rows are
perturbed online instead: each epoch a ``share`` of the rows is replaced by a fresh perturbation,
seeded by (seed, epoch, row), so a resumed run sees the same text and no corpus is multiplied
on disk.
"""

from __future__ import annotations

import random
import re

import torch
import torch.nn.functional as F

from kdforge.models.text_model import TextModel
from kdforge.recipe.schema import AugmentSpec

# Runs of two or more letters: punctuation, numbers and clitic fragments (the "n" of "n't") stay.
WORD = re.compile(r"[^\W\d_]{2,}")


class WordNeighbours:
    """Nearest whole-word tokens in a model's input embedding table (cosine), computed on demand."""

    def __init__(self, model: TextModel, count: int) -> None:
        tokenizer = model.tokenizer
        self.lowercase = bool(getattr(tokenizer, "do_lower_case", False))
        special = set(tokenizer.all_special_tokens)
        words = sorted(
            (i, t) for t, i in tokenizer.get_vocab().items() if len(t) > 1 and t.isalpha() and t not in special
        )
        self.words = [t for _, t in words]
        self.row = {t: k for k, t in enumerate(self.words)}
        table = model.hf.get_input_embeddings().weight.detach().float().cpu()
        self.table = F.normalize(table[torch.tensor([i for i, _ in words])], dim=-1)
        self.count = count
        self._found: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        key = word.lower() if self.lowercase else word
        if key not in self._found:
            row = self.row.get(key)
            if row is None:  # several word pieces, or not in the vocabulary: no candidates
                self._found[key] = []
            else:
                similarity = self.table @ self.table[row]
                similarity[row] = -2.0  # never the word itself
                top = similarity.topk(min(self.count, len(self.words) - 1)).indices.tolist()
                self._found[key] = [self.words[k] for k in top]
        return self._found[key]


class Augmenter:
    """Replaces a share of each batch's rows by perturbed copies, reproducibly per epoch.

    ``neighbours`` may be ``None`` when the spec replaces no words (``probability: 0``).
    """

    def __init__(self, spec: AugmentSpec, neighbours: WordNeighbours | None, seed: int) -> None:
        self.spec = spec
        self.neighbours = neighbours
        self.seed = seed

    def perturb(self, text: str, rng: random.Random) -> str:
        letters = [c for word in WORD.findall(text) for c in word]

        def change(match: re.Match) -> str:
            word = match.group(0)
            if self.spec.probability > 0 and rng.random() < self.spec.probability:
                assert self.neighbours is not None
                candidates = self.neighbours(word)
                word = rng.choice(candidates) if candidates else word
            if self.spec.distortion > 0 and rng.random() < self.spec.distortion:
                word = distort(word, rng, letters)
            return word

        return WORD.sub(change, text)

    def __call__(self, rows: list[dict], epoch: int) -> list[dict]:
        out = []
        for row in rows:
            rng = random.Random(f"{self.seed}/{epoch}/{row['index']}")
            if rng.random() >= self.spec.share:
                out.append(row)
                continue
            changed = dict(row, text=self.perturb(row["text"], rng))
            if row.get("text_pair") is not None:
                changed["text_pair"] = self.perturb(row["text_pair"], rng)
            out.append(changed)
        return out


def distort(word: str, rng: random.Random, letters: list[str]) -> str:
    """One character edit of ``word``, as PRADO's text distorter makes: with chance 1/3 each, delete a
    character, move one elsewhere (words of 3+ characters; shorter ones stay) or insert one of ``letters``."""
    kind = rng.random()
    at = rng.randrange(len(word))
    if kind < 1 / 3:
        return word[:at] + word[at + 1 :]
    if kind < 2 / 3:
        if len(word) <= 2:
            return word
        rest = word[:at] + word[at + 1 :]
        to = rng.randrange(len(rest))
        return rest[:to] + word[at] + rest[to:]
    return word[:at] + rng.choice(letters or [word[at]]) + word[at:]
