"""pQRNN students on SNIPS and ATIS: intents and slots, each distilled from a fine-tuned MiniLM.

Runs recipes/{snips,atis}-{intent,slots}.yaml (stage 1 fine-tunes all-MiniLM-L6-v2, stage 2
distils it into a pQRNN with no embedding table) and writes the table to BENCHMARKS.md.
Finished stages are reused, so a rerun only redoes what changed.

    python benchmarks/pqrnn_nlu.py [--out runs/bench-nlu] [--only snips-intent ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import command, machine, table, write_section

import kdforge
from kdforge.models.loading import quiet_transformers
from kdforge.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
RUNS = ["snips-intent", "snips-slots", "atis-intent", "atis-slots"]
#: The issue's targets: share of the teacher's score the pQRNN keeps, per part.
TARGET = {"intent": 97.0, "slots": 95.0}


def _row(name: str, results: dict) -> dict:
    distill = results["stages"][-1]
    metric = distill["primary_metric"]
    teacher, student = distill["metrics"]["teacher"], distill["metrics"]["student"]
    splits = [s for s in ("eval", "test") if s in student]
    return {
        "run": name,
        "metric": metric,
        "teacher_parameters": results["teacher"]["parameters"],
        "student_parameters": results["student"]["parameters"],
        "teacher": {s: teacher[s][metric] for s in splits},
        "student": {s: student[s][metric] for s in splits},
        "teacher_speed": results["teacher"]["sentences_per_second"],
        "student_speed": results["student"]["sentences_per_second"],
        "minutes": (distill.get("training") or {}).get("seconds", 0) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-nlu"))
    parser.add_argument("--only", nargs="*", choices=RUNS, help="run these only (the table keeps earlier rows)")
    args = parser.parse_args()
    quiet_transformers()

    summary_file = args.out / "summary.json"
    rows = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    for name in args.only or RUNS:
        results = kdforge.run(load_recipe(RECIPES / f"{name}.yaml"), args.out / name, show=True)
        rows[name] = _row(name, results)
        args.out.mkdir(parents=True, exist_ok=True)
        summary_file.write_text(json.dumps(rows, indent=2))

    header = [
        "task",
        "metric",
        "teacher dev / test",
        "pQRNN dev / test",
        "kept (test)",
        "parameters (teacher / pQRNN)",
        "smaller",
        "sentences/s (teacher / pQRNN)",
        "speed-up",
        "distillation",
    ]
    lines, verdicts = [], []
    for name in RUNS:
        if name not in rows:
            continue
        r = rows[name]
        split = "test" if "test" in r["student"] else "eval"
        kept = r["student"][split] / r["teacher"][split] * 100
        part = name.split("-")[1]
        verdicts.append(f"{name}: {kept:.1f}% of the teacher (target >= {TARGET[part]:.0f}%)")
        lines.append(
            [
                name,
                "accuracy" if r["metric"] == "accuracy" else "span F1",
                " / ".join(f"{r['teacher'][s]:.2f}" for s in r["teacher"]),
                " / ".join(f"{r['student'][s]:.2f}" for s in r["student"]),
                f"{kept:.1f}%",
                f"{r['teacher_parameters'] / 1e6:.1f}M / {r['student_parameters'] / 1e3:.0f}K",
                f"{r['teacher_parameters'] / r['student_parameters']:.0f}x",
                f"{r['teacher_speed']:,.0f} / {r['student_speed']:,.0f}",
                f"{r['student_speed'] / r['teacher_speed']:.1f}x",
                f"{r['minutes']:.0f} min",
            ]
        )
    body = f"""## pQRNN students on SNIPS and ATIS (issue 5)

Command: `{command()}` (recipes `recipes/{{snips,atis}}-{{intent,slots}}.yaml`), on {machine()}.
Stage 1 fine-tunes all-MiniLM-L6-v2 on the task (intents: `classification`; slots: `token_classification`,
BIO tags on each word's first sub-token); stage 2 distils it into a pQRNN (hashed ternary projection, no
embedding table, 2 bidirectional QRNN layers) with `kd` + `ce` on the training split, with pQRNN's
character distortion on half the rows. Dev = `valid`, test = `test`; intents in accuracy, slots in
seqeval span F1, x100. Throughput: batch 64 in the same run.

{table(header, lines)}

- {chr(10).join("- " + v for v in verdicts)[2:]}
"""
    write_section("pqrnn-nlu", body)
    print(body)


if __name__ == "__main__":
    main()
