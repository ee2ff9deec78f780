"""RetriKT vs plain KD vs labels only over several seeds: the per-seed runs of benchmarks/retrikt.py, averaged.

With 56 to 408 dev rows one example moves a task by 0.25 to 1.8 points, and a new seed moves the
teacher itself by up to 13 points (COPA). One seed cannot say which student is better; this table
says how often, and by how much on average. It trains nothing: it reads the ``summary.json`` that
``benchmarks/retrikt.py --seed N --out DIR`` wrote into each DIR.

    python benchmarks/retrikt_seeds.py runs/bench-retrikt runs/bench-retrikt-seed1 ... \
        [--only copa] [--section retrikt-seeds] [--title "..."]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _common import command, table, write_section
from retrikt import TASKS, gap_closed

STUDENTS = ("teacher", "labels", "kd", "retrikt")


def read_runs(folders: list[Path], only: list[str] | None) -> dict[str, list[dict]]:
    """Each task's rows, one per folder that has it (the recipe's seed read from the run)."""
    by_task: dict[str, list[dict]] = {}
    for folder in folders:
        summary = folder / "summary.json"
        if not summary.is_file():
            raise SystemExit(f"{summary}: no such file; run benchmarks/retrikt.py --out {folder} first")
        for task, row in json.loads(summary.read_text()).items():
            if only and task not in only:
                continue
            recipe = json.loads((folder / task / "recipe.json").read_text())
            by_task.setdefault(task, []).append(row | {"seed": recipe.get("seed"), "folder": str(folder)})
    return by_task


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def summarise(by_task: dict[str, list[dict]]) -> tuple[list[list], list[str]]:
    body, verdicts, closed_by_task = [], [], []
    for task, rows in sorted(by_task.items(), key=lambda item: list(TASKS).index(item[0])):
        means = {s: statistics.fmean(r[s] for r in rows) for s in STUDENTS}
        wins = sum(r["retrikt"] > r["kd"] for r in rows)
        ties = sum(r["retrikt"] == r["kd"] for r in rows)
        seeds = ", ".join(str(r["seed"]) for r in rows)
        per_seed = "; ".join(f"{r['kd']:.1f} / {r['retrikt']:.1f}" for r in rows)
        closed = gap_closed(means, "retrikt")
        closed_by_task.append(closed)
        body.append(
            [
                f"{TASKS.get(task, task)} ({rows[0]['dev_rows']})",
                seeds,
                *(mean_sd([r[s] for r in rows]) for s in STUDENTS),
                f"{wins} / {ties} / {len(rows) - wins - ties}",
                per_seed,
                f"{gap_closed(means, 'kd'):.0f}% / {closed:.0f}%",
            ]
        )
        better = "beats" if means["retrikt"] > means["kd"] else "does not beat"
        verdicts.append(
            f"{task}: RetriKT {better} plain KD on the mean over {len(rows)} seeds "
            f"({means['retrikt']:.2f} vs {means['kd']:.2f}; gap closed {closed:.0f}%)"
        )
    closed_by_task = [c for c in closed_by_task if c == c]  # no gap where labels alone match the teacher
    if closed_by_task:
        verdicts.append(f"mean over the tasks of the gap closed by the means: {statistics.fmean(closed_by_task):.0f}%")
    return body, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="--out folders of benchmarks/retrikt.py, one per seed")
    parser.add_argument("--only", nargs="*", choices=list(TASKS), help="these tasks only")
    parser.add_argument("--section", default="retrikt-seeds", help="BENCHMARKS.md section the table goes to")
    parser.add_argument("--title", default="RetriKT over several seeds", help="the section's heading")
    args = parser.parse_args()
    by_task = read_runs(args.folders, args.only)
    if not by_task:
        raise SystemExit("no task in those runs")
    body, verdicts = summarise(by_task)
    header = [
        "task (dev rows)",
        "seeds",
        "teacher",
        "labels only",
        "plain KD",
        "RetriKT",
        "RetriKT vs KD: wins / ties / losses",
        "per seed: KD / RetriKT",
        "gap closed by the means: KD / RetriKT",
    ]
    write_section(
        args.section,
        f"""## {args.title}

`{command()}` (reads the runs of `benchmarks/retrikt.py --seed N --out DIR`; trains nothing). Dev
accuracy x100, mean ± sample standard deviation over the seeds (one seed: its figure); a seed changes the teacher's
fine-tuning, the store's perturbations and every student's initialisation and order. "Gap closed"
is (mean student - mean labels only) / (mean teacher - mean labels only).

{table(header, body)}

{"; ".join(verdicts)}.
""",
    )
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
