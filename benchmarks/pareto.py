"""Every student kind next to its teacher on STS-B and SST-2: quality kept vs speed-up vs size.

The students come from the other benchmarks and recipes (their folders are listed in the table);
this script only exports the ONNX int8 variants it needs and measures everything with
``kdforge bench`` in one run per task: one fresh process per model, alternating timing rounds,
the same sentences and thread count for all. Writes a table and a plot into BENCHMARKS.md.

    python benchmarks/pareto.py [--out runs/bench-pareto] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import ROOT, command, machine, shared_data, table, write_section

from kdforge.evaluate.bench import bench
from kdforge.export import export
from kdforge.models import load_model
from kdforge.models.loading import quiet_transformers
from kdforge.recipe.schema import DataSource

RUNS = ROOT / "runs"
FIGURE = ROOT / "benchmarks" / "figures" / "pareto.png"

#: (task, split, data folder, teacher, students as (kind, folder, how it was made)).
TASKS = {
    "STS-B": (
        "sts",
        "test",
        "stsb",
        "minilm",
        [
            ("transformer, 2 layers", RUNS / "bench-sts/kdforge/student", "benchmarks/sts_minilm.py"),
            ("static embeddings", RUNS / "bench-static/kdforge/student", "benchmarks/static_vs_model2vec.py"),
        ],
    ),
    "SST-2": (
        "classification",
        "dev",
        "glue_sst2",
        RUNS / "bench-sst2/stages/teacher/model",
        [
            ("transformer, 2 layers", RUNS / "bench-sst2/student", "recipes/sst2-minilm-l2.yaml"),
            ("pQRNN", RUNS / "bench-pareto/sst2-pqrnn/student", "recipes/sst2-pqrnn.yaml"),
        ],
    ),
}


def _int8(folder: Path, out: Path) -> Path:
    """The ONNX int8 export of a transformer student (made once, reused)."""
    target = out / "onnx-int8" / folder.parent.name
    if not (target / "model.onnx").is_file():
        export(load_model(str(folder)), target, "onnx-int8")
    return target


def _plot(points: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.8))
    axes = figure.subplots()
    for task, marker in zip(TASKS, "os", strict=False):
        rows = [p for p in points if p["task"] == task]
        axes.scatter(
            [p["speedup"] for p in rows],
            [p["kept"] for p in rows],
            s=[max(20.0, 300 * (p["parameters"] / rows[0]["teacher_parameters"]) ** 0.5) for p in rows],
            marker=marker,
            label=task,
            alpha=0.7,
        )
        for p in rows:
            axes.annotate(p["kind"], (p["speedup"], p["kept"]), textcoords="offset points", xytext=(6, 4), fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("throughput vs the teacher (batch 64, same threads; log scale)")
    axes.set_ylabel("% of the teacher's score kept")
    axes.set_title("kdforge students: quality kept vs speed-up (marker area ~ parameters)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-pareto"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet_transformers()
    data_root = shared_data()

    points, lines, missing = [], [], []
    for name, (task, split, folder, teacher, students) in TASKS.items():
        present = [(kind, path, made) for kind, path, made in students if path.is_dir()]
        missing += [f"{name} {kind} ({made})" for kind, path, made in students if not path.is_dir()]
        models = [("teacher", str(teacher), "-")]
        for kind, path, made in present:
            models.append((kind, str(path), made))
            if kind.startswith("transformer"):
                models.append((kind + ", ONNX int8", str(_int8(path, args.out)), "kdforge export --format onnx-int8"))
        data = DataSource(path=str(data_root / folder), split=split)
        result = bench([m[1] for m in models], task, data, split, rounds=args.rounds, threads=args.threads)
        (args.out / f"{task}.json").parent.mkdir(parents=True, exist_ok=True)
        (args.out / f"{task}.json").write_text(json.dumps(result, indent=2))
        metric = result["settings"]["metric"]
        base = result["models"][0]
        for (kind, _source, made), row in zip(models, result["models"], strict=True):
            kept = row["metrics"][metric] / base["metrics"][metric] * 100
            speedup = row["sentences_per_second"] / base["sentences_per_second"]
            smaller = base["parameters"] / row["parameters"]
            points.append(
                {
                    "task": name,
                    "kind": kind,
                    "kept": kept,
                    "speedup": speedup,
                    "parameters": row["parameters"],
                    "teacher_parameters": base["parameters"],
                }
            )
            lines.append(
                [
                    name,
                    kind,
                    f"{row['metrics'][metric]:.2f}",
                    f"{kept:.1f}%",
                    f"{row['sentences_per_second']:,.0f}",
                    f"{speedup:.1f}x",
                    f"{row['parameters'] / 1e6:.2f}M",
                    f"{smaller:.0f}x" if smaller >= 2 else f"{smaller:.2f}x",
                    f"{row['disk_mb']:.1f}",
                    f"{row['latency_ms_p50']:.2f}",
                    made,
                ]
            )
    _plot(points, FIGURE)
    (args.out / "pareto.json").write_text(json.dumps(points, indent=2))
    header = [
        "task",
        "model",
        "score",
        "kept",
        "sentences/s",
        "speed-up",
        "parameters",
        "smaller",
        "disk MB",
        "batch-1 p50 ms",
        "made by",
    ]
    note = f"\n- Not measured (no trained student found): {'; '.join(missing)}.\n" if missing else ""
    body = f"""## Pareto: every student kind on STS-B and SST-2 (issue 5)

Command: `{command()}`, on {machine()}; every model at {args.threads} thread(s).
One `kdforge bench` run per task: a fresh process per model, {args.rounds} alternating timing rounds over
the same sentences (throughput: batch 64; latency: batch 1; tokenization included). Scores: STS-B test
Spearman, SST-2 dev accuracy, x100; "kept" and "speed-up" are against the teacher in the same run.

{table(header, lines)}
{note}
![quality kept vs speed-up](benchmarks/figures/pareto.png)
"""
    write_section("pareto", body)
    print(body)


if __name__ == "__main__":
    main()
