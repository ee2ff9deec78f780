"""Would RetriKT retrieve better from the teacher's key space? A diagnostic on finished retrikt.py runs.

The RetriKT students key their store with their own features, which fit the very rows they index, so
on dev text retrieval adds little (BENCHMARKS.md, RetriKT). This measures, before anything is built,
what keying the store by the *teacher's* embeddings could give:

- **upper bound**: the store keyed by the teacher's features (or sentence embedding), dev queries made by
  the teacher itself; the similarity-weighted k-NN vote of the stored teacher distributions;
- **reachable by a student**: each trained student's dev features mapped into the teacher's key space by
  least squares fitted on the store's rows (the best linear query of that student), with the same vote.

If the mapped queries vote no better than the student's own head, teacher keys cannot help that student.
It trains nothing:

    python benchmarks/retrikt_teacher_keys.py [--runs runs/bench-retrikt] [--only mrpc] [--students kd retrikt]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import command, machine, table, write_section
from retrikt import TASKS, dev_split, gold_labels, ran_recipe, retrieval_settings

from kdforge.models import load_model
from kdforge.models.loading import quiet_transformers
from kdforge.models.retrieval import RetrievalHead
from kdforge.store.samples import open_samples
from kdforge.tasks.data import texts_and_pairs


def with_ones(rows: torch.Tensor) -> torch.Tensor:
    """``[rows, 1]``: an affine map is then one matrix."""
    return torch.cat([rows, torch.ones(len(rows), 1)], dim=1)


def least_squares_map(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``W`` with ``[source, 1] @ W`` closest to the unit-length ``target`` rows (affine, no regularisation)."""
    return torch.linalg.lstsq(with_ones(source), F.normalize(target, dim=-1)).solution


def task_rows(run: Path, name: str, students: list[str]) -> list[list]:
    dev = dev_split(name)
    texts, pairs = texts_and_pairs(dev)
    store = open_samples(run / "stages" / "knowledge" / "store")
    teacher = load_model(str(run / "stages" / "teacher" / "model"))
    gold = gold_labels(teacher, dev)

    def accuracy(scores: torch.Tensor) -> float:
        return float((scores.argmax(-1) == gold).float().mean()) * 100

    keys = teacher.rows("features", store.texts, store.pairs).float()
    settings = retrieval_settings(ran_recipe(run))
    head = RetrievalHead(store, settings["k"], settings["tau"], key="features")  # the student's search, teacher keys
    searched = f"{settings['k']}, {settings['tau']}"
    head.set_keys(keys)
    vote = head.retrieved
    dev_keys = teacher.rows("features", texts, pairs).float()  # the teacher's own queries: the upper bound
    own = accuracy(teacher.predict(texts, pairs))
    rows = [[name, "teacher", own, searched, accuracy(vote(dev_keys)), 1.0]]
    for stage in students:
        student = load_model(str(run / "stages" / stage / "model"))
        student.retrieval = None  # its own head alone
        own = accuracy(student.predict(texts, pairs))
        mapping = least_squares_map(student.rows("features", store.texts, store.pairs).float(), keys)
        mapped = with_ones(student.rows("features", texts, pairs).float()) @ mapping
        cosine = float((F.normalize(mapped, dim=-1) * F.normalize(dev_keys, dim=-1)).sum(-1).mean())
        rows.append([name, f"{stage} student", own, searched, accuracy(vote(mapped)), cosine])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-retrikt"))
    parser.add_argument("--only", nargs="*", choices=list(TASKS), default=["mrpc"])
    parser.add_argument("--students", nargs="*", default=["kd", "retrikt"])
    parser.add_argument("--section", default="retrikt-teacher-keys")
    args = parser.parse_args()
    quiet_transformers()
    rows = []
    for name in args.only:
        if not (args.runs / name / "stages" / "knowledge" / "store").is_dir():
            raise SystemExit(f"{args.runs / name}: no finished run; run benchmarks/retrikt.py --only {name} first")
        rows += task_rows(args.runs / name, name, args.students)
    header = [
        "task",
        "queries made by",
        "its own head",
        "k, tau (the run's)",
        "k-NN vote over teacher keys",
        "dev cosine to the teacher's key",
    ]
    (args.runs / "teacher-keys.json").write_text(json.dumps(rows, indent=2))
    write_section(
        args.section,
        f"""## RetriKT diagnostic: would the teacher's key space help?

`{command()}` on {machine()}. The store of each task's finished `benchmarks/retrikt.py` run, keyed by
the fine-tuned teacher's features (what its classifier layer reads). Row "teacher": the teacher makes the dev
queries itself (the upper bound of teacher keys). Row "X student": the student's dev features mapped into
the teacher's key space by an affine least-squares fit on the store's rows. Accuracy x100 on dev.

{table(header, rows)}
""",
    )


if __name__ == "__main__":
    main()
