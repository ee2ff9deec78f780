"""ONNX int8 of the 2-layer STS student: throughput and STS-B quality next to PyTorch fp32, in one run.

The student of ``recipes/sts-minilm-l2.yaml`` (as ``benchmarks/sts_minilm.py`` trains it) is
exported as ONNX fp32 and ONNX int8, then ``kdforge bench`` measures PyTorch fp32, PyTorch
dynamic int8, ONNX fp32 and ONNX int8 side by side (one process per model, alternating rounds).
Target: ONNX int8 >= 1.5x the PyTorch fp32 throughput at batch 64, <= 0.5 Spearman points lost.
Writes the table into BENCHMARKS.md.

    python benchmarks/onnx_int8.py [--student runs/bench-sts/kdforge/student] [--out runs/bench-onnx]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import ROOT, command, machine, shared_data, table, write_section

from kdforge.evaluate.bench import bench, bench_table, save_bench
from kdforge.export import export
from kdforge.models import load_model
from kdforge.models.loading import quiet_transformers
from kdforge.recipe.schema import DataSource

DEFAULT_STUDENT = ROOT / "runs" / "bench-sts" / "kdforge" / "student"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, default=DEFAULT_STUDENT, help="the 2-layer STS student's folder")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-onnx"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not args.student.is_dir():
        raise SystemExit(f"{args.student} not found: run benchmarks/sts_minilm.py first, or pass --student")
    quiet_transformers()

    student = load_model(str(args.student))
    folders = {fmt: export(student, args.out / fmt, fmt) for fmt in ("onnx", "onnx-int8")}
    data = DataSource(path=str(shared_data() / "stsb"), split="test")
    sources = [str(args.student), str(folders["onnx"]), str(folders["onnx-int8"])]
    result = bench(sources, "sts", data, "test", torch_int8=True, sentences=1024, rounds=args.rounds)
    files = save_bench(result, args.out)

    from rich.console import Console

    Console().print(bench_table(result))
    rows = {row["format"]: row for row in result["models"]}
    base = rows["pytorch fp32"]
    lines = []
    for fmt in ("pytorch fp32", "pytorch int8", "onnx fp32", "onnx int8"):
        row = rows[fmt]
        lines.append(
            [
                fmt,
                row["metrics"]["spearman"],
                row["metrics"]["spearman"] - base["metrics"]["spearman"],
                row["sentences_per_second"],
                row["sentences_per_second"] / base["sentences_per_second"],
                f"{row['latency_ms_p50']:.1f} / {row['latency_ms_p95']:.1f}",
                row["disk_mb"],
                f"{row['peak_memory_mb']:.0f}" if row["peak_memory_mb"] is not None else "-",
            ]
        )
    header = [
        "model",
        "STS-B test Spearman",
        "points vs fp32",
        "sentences/s (batch 64)",
        "x PyTorch fp32",
        "batch-1 ms p50 / p95",
        "disk MB",
        "peak memory MB",
    ]
    int8 = rows["onnx int8"]
    speedup = int8["sentences_per_second"] / base["sentences_per_second"]
    lost = base["metrics"]["spearman"] - int8["metrics"]["spearman"]
    settings = result["settings"]
    body = f"""## ONNX int8 of the 2-layer STS student (issue: deployment)

Command: `{command()}`, on {machine()}.
Student: `{args.student.relative_to(ROOT) if args.student.is_relative_to(ROOT) else args.student}` (2 layers,
from `recipes/sts-minilm-l2.yaml`), exported with `kdforge export --format onnx` and `--format onnx-int8`
(onnxruntime dynamic quantization, int8 weights per output channel); PyTorch int8 is torch's dynamic
quantization of the linear layers. Measured by `kdforge bench` in one run: one fresh process per model,
{settings["threads"]} threads each, timing in {settings["rounds"]} alternating rounds over {settings["sentences"]:,}
STS-B test sentences (throughput: best round at batch 64, sorted by length; latency: batch 1,
{settings["latency_sentences"]} sentences per round, tokenization included). Peak memory: {settings["memory"]}.

{table(header, lines)}

- ONNX int8: {speedup:.2f}x the PyTorch fp32 throughput, {lost:+.2f} Spearman points lost
  (target: >= 1.5x, <= 0.5 points): {"met" if speedup >= 1.5 and lost <= 0.5 else "missed"}.
- The machine was shared with other jobs, so absolute figures are noisy; the ratios come from
  rounds that alternate between the models and are what this table is for.
"""
    write_section("onnx-int8", body)
    (args.out / "summary.json").write_text(json.dumps({"speedup": speedup, "spearman_lost": lost, **result}, indent=2))
    print(body)
    print(f"plot: {files.get('plot')}")


if __name__ == "__main__":
    main()
