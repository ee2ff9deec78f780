"""The SNIPS / ATIS pQRNN students deployed: PyTorch, ONNX fp32 and ONNX int8 next to the teacher, in one run.

Takes the runs of ``benchmarks/pqrnn_nlu.py`` (a fine-tuned MiniLM joint teacher and its pQRNN
student per dataset), exports each student with ``kdforge export --format onnx`` and
``--format onnx-int8``, and measures the four models with ``kdforge bench --task intent_slots``:
one fresh process per model, alternating timing rounds, the test split's sentences, words in and
each word's tag (and the intent) out, as evaluation runs them. Writes the table into BENCHMARKS.md.

    python benchmarks/nlu_deploy.py [--runs runs/bench-nlu] [--only atis-joint] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import command, machine, shared_data, table, write_section
from rich.console import Console

from kdforge.evaluate.bench import bench, bench_table, save_bench
from kdforge.export import export
from kdforge.models import load_model
from kdforge.models.loading import quiet_transformers
from kdforge.recipe.schema import DataSource

RUNS = {"snips-joint": "snips", "atis-joint": "atis"}
LABELS = ["teacher (PyTorch)", "pQRNN (PyTorch)", "pQRNN ONNX fp32", "pQRNN ONNX int8"]


def measure(run: Path, data: Path, threads: int, rounds: int) -> dict:
    """Export the run's student twice, then bench teacher, student and both graphs side by side."""
    student = run / "student"
    teacher = run / "stages" / "teacher" / "model"
    for folder in (student, teacher):
        if not folder.is_dir():
            raise SystemExit(f"{folder} not found: run benchmarks/pqrnn_nlu.py first")
    model = load_model(str(student))
    graphs = [export(model, run / f"student-{fmt}", fmt) for fmt in ("onnx", "onnx-int8")]
    sources = [str(teacher), str(student), *map(str, graphs)]
    source = DataSource(path=str(data), split="test")
    result = bench(sources, "intent_slots", source, "test", rounds=rounds, threads=threads, sentences=100_000)
    save_bench(result, run / "deploy")
    Console().print(bench_table(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-nlu"))
    parser.add_argument("--only", nargs="*", choices=list(RUNS), help="measure these only (the table keeps the others)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    quiet_transformers()

    summary_file = args.runs / "deploy.json"
    results = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    for name in args.only or list(RUNS):
        results[name] = measure(args.runs / name, shared_data() / RUNS[name], args.threads, args.rounds)
        summary_file.write_text(json.dumps(results, indent=2))

    header = [
        "data",
        "model",
        "intent accuracy",
        "slot F1",
        "exact match",
        "sentences/s (batch 64)",
        "x teacher",
        "batch-1 ms p50 / p95",
        "parameters",
        "disk MB",
    ]
    lines, notes = [], []
    for name in RUNS:
        if name not in results:
            continue
        models = results[name]["models"]
        base = models[0]["sentences_per_second"]
        for label, row in zip(LABELS, models, strict=True):
            m = row["metrics"]
            lines.append(
                [
                    RUNS[name].upper(),
                    label,
                    m["intent_accuracy"],
                    m["slot_f1"],
                    m["exact_match"],
                    row["sentences_per_second"],
                    f"{row['sentences_per_second'] / base:.1f}x",
                    f"{row['latency_ms_p50']:.2f} / {row['latency_ms_p95']:.2f}",
                    f"{row['parameters']:,}",
                    row["disk_mb"],
                ]
            )
        pt, fp32, int8 = (models[i]["metrics"] for i in (1, 2, 3))
        notes.append(
            f"{RUNS[name].upper()}: ONNX fp32 changes exact match by {fp32['exact_match'] - pt['exact_match']:+.2f} "
            f"and slot F1 by {fp32['slot_f1'] - pt['slot_f1']:+.2f}; "
            f"int8 by {int8['exact_match'] - pt['exact_match']:+.2f} and {int8['slot_f1'] - pt['slot_f1']:+.2f}; "
            "ONNX int8 runs "
            f"{models[3]['sentences_per_second'] / models[1]['sentences_per_second']:.2f}x the PyTorch pQRNN"
        )
    settings = next(iter(results.values()))["settings"]
    note_lines = "\n".join(f"- {note}" for note in notes)
    body = f"""## SNIPS / ATIS pQRNN students deployed: ONNX fp32 and int8 (issue 5)

Command: `{command()}`, on {machine()}.
The joint students of `benchmarks/pqrnn_nlu.py`, exported with `kdforge export --format onnx` and
`--format onnx-int8` (one graph, two outputs: intent logits and per-token slot logits), measured
with `kdforge bench --task intent_slots` next to the teacher: a fresh process per model,
{settings["rounds"]} alternating rounds, {settings["threads"]} thread(s) each, the test split
({settings["sentences"]:,} sentences; throughput: best round at batch {settings["batch_size"]};
latency: batch 1). Timing includes tokenization and mapping sub-tokens back to words. Scores x100
on the test split.

{table(header, lines)}

{note_lines}
- ONNX fp32 halves the pQRNN's batch-1 latency. Dynamic int8 does not pay off at this size: the
  student's time goes to the hash projection and small convolutions, not to large matrix products,
  so quantizing and dequantizing activations costs more than int8 kernels save.
"""
    write_section("nlu-deploy", body)
    print(body)


if __name__ == "__main__":
    main()
