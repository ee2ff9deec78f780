"""Read examples from files (STS-B, GLUE TSV, SuperGLUE JSONL, ATIS/SNIPS folders, any
CSV/TSV/JSONL/TXT) or the hub.

Every source becomes an Arrow ``datasets.Dataset`` with the same columns: ``text``, and when
present ``text_pair``, ``label`` (as written: int or string) and ``score`` (float). Rows read
with ``read_rows`` keep their own columns; the ATIS/SNIPS layout adds ``words`` and ``tags``
there, which token classification reads.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import datasets

from kdforge.errors import DataError
from kdforge.recipe.schema import DataSource
from kdforge.store.samples import is_sample_store, open_samples

# Column pairs recognised as (text, text_pair), in order; then single-text columns.
PAIR_SCHEMAS = (
    ("text", "text_pair"),  # kdforge's own layout (sample stores, COPA)
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("#1 String", "#2 String"),
    ("question1", "question2"),
    ("query", "passage"),
    ("anchor", "positive"),
    ("s1", "s2"),
)
TEXT_COLUMNS = ("sentence", "text", "sentence1", "premise", "question", "query", "anchor", "content")
LABEL_COLUMNS = ("label", "Quality", "gold_label", "labels")
SCORE_COLUMNS = ("score", "similarity", "relatedness", "gold_score")

# Files tried, in order, when a source names a folder and a split.
SPLIT_ALIASES = {"dev": ("dev", "validation", "val", "valid"), "validation": ("validation", "dev", "val", "valid")}
SPLIT_ALIASES["val"] = SPLIT_ALIASES["dev"]
SPLIT_FILES = ("{}.tsv", "{}.jsonl", "sts-{}.csv", "{}.csv", "{}.txt", "{}.json")
# The ATIS/SNIPS layout (as JointBERT ships them): a folder per split with line-aligned files:
# the words of a sentence, their BIO tags (one per word) and the sentence's intent.
SEQ_WORDS, SEQ_TAGS, SEQ_INTENT = "seq.in", "seq.out", "label"

csv.field_size_limit(sys.maxsize)


def load_source(source: DataSource, split: str | None = None) -> datasets.Dataset:
    """Load one source as a dataset with normalized columns (``limit`` rows at most)."""
    rows, where = read_rows(source, split)
    return datasets.Dataset.from_list(_normalize(rows, source, where))


def texts_and_pairs(ds: datasets.Dataset) -> tuple[list[str], list[str] | None]:
    """The first texts of a dataset's rows, and the second ones where it holds sentence pairs."""
    return list(ds["text"]), list(ds["text_pair"]) if "text_pair" in ds.column_names else None


COPA_FORMATS = ("copa", "copa_candidates")


def read_rows(source: DataSource, split: str | None = None) -> tuple[list[dict], str]:
    """The source's rows with their columns as written (``limit`` at most), and the file they came from.

    For tasks whose rows have their own columns (ranking: query, positive, negatives).
    """
    counted = False
    if source.hub:
        rows = _hub_rows(source, split)
        where = f"hub:{source.hub}"
    elif source.format == "auto" and is_sample_store(source.path):  # a knowledge stage's samples (RetriKT)
        store = open_samples(source.path)
        rows, where = store.samples.remove_columns("source").to_list(), str(store.folder)
    elif source.format in COPA_FORMATS or (source.format == "auto" and Path(source.path).suffix == ".xml"):
        path = _pick_file(Path(source.path), source.split or split)
        swapped, candidates = (source.split or split) == "train", source.format == "copa_candidates"
        rows, where = read_copa(path, source.limit, swapped, candidates), str(path)
        counted = True  # the limit counts COPA items, before their swapped copies
    elif source.format == "atis" or (source.format == "auto" and is_seq_folder(Path(source.path))):
        folder = _seq_split(Path(source.path), source.split or split)
        rows, where = read_seq_folder(folder), str(folder)
    else:
        path = _pick_file(Path(source.path), source.split or split)
        where = str(path)
        rows = _file_rows(path, source.format)
    if source.limit and not counted:
        rows = rows[: source.limit]
    if not rows:
        raise DataError(f"{where}: no examples")
    return rows, where


def _pick_file(path: Path, split: str | None) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    split = split or "train"
    for name in SPLIT_ALIASES.get(split, (split,)):
        for pattern in SPLIT_FILES:
            candidate = path / pattern.format(name)
            if candidate.is_file():
                return candidate
    files = ", ".join(sorted(p.name for p in path.iterdir() if p.is_file())) or "none"
    raise DataError(f"{path}: no file for split {split!r} (files: {files}); name the file in 'path'")


def is_seq_folder(path: Path) -> bool:
    """A split folder holding ``seq.in``, or a folder of such split folders (the ATIS/SNIPS layout)."""
    if not path.is_dir():
        return False
    return (path / SEQ_WORDS).is_file() or any((p / SEQ_WORDS).is_file() for p in path.iterdir() if p.is_dir())


def _seq_split(path: Path, split: str | None) -> Path:
    """The split's folder: ``path`` itself when it holds ``seq.in``, else its subfolder for ``split``."""
    if not path.is_dir():
        raise DataError(
            f"{path}: format atis is a folder with {SEQ_WORDS}, {SEQ_TAGS} and {SEQ_INTENT} (or one per split)"
        )
    if (path / SEQ_WORDS).is_file():
        return path
    split = split or "train"
    for name in SPLIT_ALIASES.get(split, (split,)):
        if (path / name / SEQ_WORDS).is_file():
            return path / name
    found = ", ".join(sorted(p.name for p in path.iterdir() if (p / SEQ_WORDS).is_file())) or "none"
    raise DataError(f"{path}: no folder with a {SEQ_WORDS} for split {split!r} (split folders: {found})")


def read_seq_folder(folder: Path) -> list[dict]:
    """One row per line of ``seq.in``: ``text``, ``words`` (split on whitespace), and when the files
    exist ``tags`` (``seq.out``, one per word) and ``label`` (the intent).

    The files are aligned by line, so a count that disagrees is an error (with the file and
    line) rather than a silent shift of every later example.
    """
    lines = {name: _lines(folder / name) for name in (SEQ_WORDS, SEQ_TAGS, SEQ_INTENT) if (folder / name).is_file()}
    sentences = lines[SEQ_WORDS]
    for name, values in lines.items():
        if len(values) != len(sentences):
            raise DataError(f"{folder / name}: {len(values)} lines, but {SEQ_WORDS} has {len(sentences)}")
    rows = []
    for number, line in enumerate(sentences, 1):
        words = line.split()
        if not words:
            raise DataError(f"{folder / SEQ_WORDS}:{number}: empty line (the files are aligned by line)")
        row: dict = {"text": " ".join(words), "words": words}
        if SEQ_TAGS in lines:
            tags = lines[SEQ_TAGS][number - 1].split()
            if len(tags) != len(words):
                raise DataError(
                    f"{folder / SEQ_TAGS}:{number}: {len(tags)} tags for the {len(words)} words of {SEQ_WORDS}:{number}"
                )
            row["tags"] = tags
        if SEQ_INTENT in lines:
            row["label"] = lines[SEQ_INTENT][number - 1].strip()
        rows.append(row)
    return rows


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None


def read_copa(path: Path, limit: int | None = None, swapped: bool = False, candidates: bool = False) -> list[dict]:
    """COPA (Roemmele et al. 2011) as sentence-pair classification: ``text`` is the premise and the
    question (``What was the cause?``), ``text_pair`` the two alternatives, ``label`` 0 for the first, 1
    for the second. ``candidates``: ``text`` and ``text_pair`` are the two candidate sentences instead,
    "premise because alternative" (a cause) or "premise so alternative" (an effect): a model that reads
    the texts of a pair apart (a pQRNN with ``compare_pairs``) then scores each alternative with the
    premise, rather than both alternatives in one vector. Reads the original XML (``copa-dev.xml``; its
    first 400 items are SuperGLUE's train split, the last 100 its validation split) or SuperGLUE's
    JSONL. ``swapped`` (training splits) adds every item again with the alternatives swapped, so
    position is no cue; ``limit`` counts items, before the swap.
    """
    if path.suffix == ".xml":
        import xml.etree.ElementTree as ET  # the COPA release: no entities, no DTD expansion needed

        items = [
            {
                "premise": item.findtext("p", "").strip(),
                "choice1": item.findtext("a1", "").strip(),
                "choice2": item.findtext("a2", "").strip(),
                "question": item.get("asks-for", ""),
                "label": int(item.get("most-plausible-alternative", "1")) - 1,
            }
            for item in ET.parse(path).getroot().iter("item")
        ]
    else:
        items = read_jsonl(path)
    missing = [k for k in ("premise", "choice1", "choice2", "question") if items and k not in items[0]]
    if missing:
        raise DataError(f"{path}: format copa needs premise, choice1, choice2, question (missing {', '.join(missing)})")

    def pair(item: dict, a: str, b: str) -> dict:
        if candidates:
            return {"text": _copa_candidate(item, item[a]), "text_pair": _copa_candidate(item, item[b])}
        return {"text": f"{item['premise']} What was the {item['question']}?", "text_pair": f"{item[a]} Or: {item[b]}"}

    rows = []
    for item in items[:limit]:
        label = item.get("label")
        rows.append(pair(item, "choice1", "choice2") | {"label": label})
        if swapped and label is not None:
            rows.append(pair(item, "choice2", "choice1") | {"label": 1 - int(label)})
    return rows


def _copa_candidate(item: dict, choice: str) -> str:
    """ "The man broke his toe because he dropped a hammer on his foot." (Roemmele et al.'s reading)."""
    premise = item["premise"].rstrip(".")
    connector = "because" if item["question"] == "cause" else "so"
    first = choice.split(" ", 1)[0]
    if first != "I" and not first.isupper():  # "I" and acronyms keep their case
        choice = choice[:1].lower() + choice[1:]
    return f"{premise} {connector} {choice}"


def _file_rows(path: Path, fmt: str) -> list[dict]:
    if fmt == "auto":
        fmt = _detect(path)
    try:
        if fmt == "text":
            return [{"text": line.strip()} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if fmt == "jsonl":
            return read_jsonl(path)
        if fmt == "stsb":
            return _stsb(path)
        return _delimited(path, "\t" if fmt == "tsv" else ",")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None


def _detect(path: Path) -> str:
    """By extension; otherwise a tab in the first line means TSV (or STS-B), else plain text."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".txt":
        return "text"
    if suffix == ".csv" and "\t" not in _first_line(path):
        return "csv"
    first = _first_line(path).split("\t")
    if len(first) >= 7 and _is_float(first[4]):
        return "stsb"
    return "tsv" if len(first) > 1 or suffix == ".tsv" else "text"


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig") as handle:
        return handle.readline().rstrip("\n")


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_jsonl(path: Path) -> list[dict]:
    """One dict per non-blank line; a malformed line is reported with its number."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
    return rows


def _stsb(path: Path) -> list[dict]:
    """The original STS benchmark layout: genre, file, year, id, score, s1, s2 [, extra]."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not any(f.strip() for f in fields):
                continue
            if len(fields) < 7:
                raise DataError(f"{path}:{number}: expected 7 tab-separated fields (STS-B layout), got {len(fields)}")
            if not _is_float(fields[4]):
                raise DataError(f"{path}:{number}: score {fields[4]!r} is not a number (STS-B layout: field 5)")
            rows.append({"score": float(fields[4]), "sentence1": fields[5], "sentence2": fields[6]})
    return rows


def _delimited(path: Path, delimiter: str) -> list[dict]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        return [row for row in reader if any(v for v in row.values() if isinstance(v, str))]


def _hub_rows(source: DataSource, split: str | None) -> list[dict]:
    try:
        ds = datasets.load_dataset(source.hub, source.subset, split=source.split or split or "train")
    except Exception as err:  # the hub raises many types; all mean "not available"
        raise DataError(
            f"hub:{source.hub}: cannot load ({str(err).splitlines()[0]}); offline? use a local path"
        ) from err
    return ds.to_list()


def _find(columns: list[str], explicit: str | None, candidates: tuple[str, ...], exclude: set[str]) -> str | None:
    if explicit:
        return explicit
    return next((c for c in candidates if c in columns and c not in exclude), None)


def _normalize(rows: list[dict], source: DataSource, where: str) -> list[dict]:
    columns = list(rows[0].keys())
    for name in (source.text, source.text_pair, source.label, source.score):
        if name and name not in columns:
            raise DataError(f"{where}: no column {name!r} (columns: {', '.join(columns)})")
    if source.text:
        text, pair = source.text, source.text_pair
    else:
        text, pair = next(((a, b) for a, b in PAIR_SCHEMAS if a in columns and b in columns), (None, None))
        text = text or _find(columns, None, TEXT_COLUMNS, set())
        pair = source.text_pair or pair
    if text is None:
        raise DataError(f"{where}: cannot tell which column holds the text (columns: {', '.join(columns)}); set 'text'")
    label = _find(columns, source.label, LABEL_COLUMNS, {text, pair})
    score = _find(columns, source.score, SCORE_COLUMNS, {text, pair, label})
    out = []
    for number, row in enumerate(rows):
        item = {"text": _text(row.get(text), where, number, text)}
        if pair:
            item["text_pair"] = _text(row.get(pair), where, number, pair)
        if label is not None and row.get(label) not in (None, ""):
            item["label"] = str(row[label])
        if score is not None and row.get(score) not in (None, ""):
            try:
                item["score"] = float(row[score])
            except ValueError:
                raise DataError(f"{where}: row {number + 1}: score {row[score]!r} is not a number") from None
        out.append(item)
    return out


def _text(value, where: str, number: int, column: str) -> str:
    if value is None:
        raise DataError(f"{where}: row {number + 1} has no value in column {column!r}")
    return str(value)


def sentences_of(sources: list[DataSource]) -> datasets.Dataset:
    """Every text of the sources (both sides of pairs), duplicates once, numbered."""
    seen: dict[str, None] = {}
    for source in sources:
        ds = load_source(source, "train")
        for column in ("text", "text_pair"):
            if column in ds.column_names:
                seen.update(dict.fromkeys(t for t in ds[column] if t and t.strip()))
    texts = list(seen)
    return datasets.Dataset.from_dict({"text": texts, "index": list(range(len(texts)))})
