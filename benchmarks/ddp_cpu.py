"""2-process DDP on CPU (gloo) vs 1 process, same recipe and global batch: throughput and final weights.

all-MiniLM-L6-v2 (the packaged teacher) into a 2-layer student with embedding_mse on STS-B train
sentences, dropout off. One process trains with the whole global batch; two processes started by
`accelerate launch --config_file configs/accelerate/ddp-cpu.yaml` train with half of it each. The
cores are shared out evenly: the single process gets all of them, each of the two half.
Writes BENCHMARKS.md.

    python benchmarks/ddp_cpu.py [--steps 200] [--batch 32] [--out runs/bench-ddp-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _common import ROOT, command, machine, shared_data, table, write_section
from safetensors.torch import load_file

CONFIG = ROOT / "configs" / "accelerate" / "ddp-cpu.yaml"


def recipe(data: Path, batch_size: int, steps: int) -> dict:
    return {
        "name": "ddp-cpu",
        "seed": 42,
        "teacher": "minilm",
        # dropout off: each process then computes exactly its half of the single-process batch
        "student": {"layers": [0, 5], "config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
        "task": {"name": "sts"},
        "data": {"train": [str(data / "stsb" / "sts-train.csv")], "eval": str(data / "stsb" / "sts-dev.csv")},
        "methods": [{"name": "embedding_mse"}],
        "training": {
            "batch_size": batch_size,
            "max_steps": steps,
            "lr": 2.0e-4,
            "warmup_ratio": 0.05,
            "save_every": steps,
            "log_every": max(1, steps // 10),
        },
        "output": {"benchmark": False},
    }


def run(processes: int, data: Path, global_batch: int, steps: int, threads: int, out: Path) -> dict:
    """One kdforge run with ``processes`` processes; its results, wall time and final stage weights."""
    folder = out / f"{processes}-process"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(data, global_batch // processes, steps)))
    cli = ["-m", "kdforge.cli", "run", str(path), "--out", str(folder / "run")]
    if processes == 1:
        argv = [sys.executable, *cli]
    else:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG)]
        argv = [*launch, "--num_processes", str(processes), *cli]
    per_process = str(max(1, threads // processes))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": per_process, "MKL_NUM_THREADS": per_process}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    (folder / "stderr.log").write_text(done.stderr)
    if done.returncode != 0:
        sys.exit(f"{processes}-process run failed (exit {done.returncode}); see {folder / 'stderr.log'}")
    results = json.loads((folder / "run" / "results.json").read_text())
    weights = load_file(str(folder / "run" / "stages" / "distill" / "model" / "model.safetensors"))
    return {"results": results, "wall": wall, "weights": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps of each run")
    parser.add_argument("--batch", type=int, default=32, help="global batch (split between the processes)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="CPU threads shared out per run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ddp-cpu"))
    args = parser.parse_args()
    if args.batch % 2:
        parser.error("--batch must be even: two processes take half of it each")
    data = shared_data()
    out = args.out.resolve()

    runs = {n: run(n, data, args.batch, args.steps, args.threads, out) for n in (1, 2)}
    one, two = runs[1], runs[2]
    difference = max((one["weights"][k] - two["weights"][k]).abs().max().item() for k in one["weights"])

    rows, speeds = [], {}
    for n, outcome in runs.items():
        results = outcome["results"]
        training = results["training"]
        examples = training["steps"] * args.batch
        speeds[n] = examples / training["seconds"]
        metric = results["primary_metric"]
        rows.append(
            [
                f"{n} process{'es' if n > 1 else ''}" + (" (gloo)" if n > 1 else ""),
                f"{args.batch // n} x {n}",
                f"{max(1, args.threads // n)} x {n}",
                training["steps"],
                training["seconds"],
                speeds[n],
                speeds[n] / speeds[1],
                f"{training['final_loss']:.4g}",
                results["metrics"]["student"]["eval"][metric],
                outcome["wall"],
            ]
        )
    header = [
        "run",
        "batch per process x processes",
        "threads x processes",
        "steps",
        "train seconds",
        "examples/s",
        "vs 1 process",
        "final loss",
        "student STS-B dev",
        "wall seconds (incl. loading, eval)",
    ]
    summary = {
        "steps": args.steps,
        "global_batch": args.batch,
        "threads": args.threads,
        "examples_per_second": speeds,
        "throughput_ratio": speeds[2] / speeds[1],
        "max_abs_weight_difference": difference,
        "tensors": len(one["weights"]),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    body = f"""## DDP on CPU: 2 gloo processes vs 1 process (scale-out issue)

Command: `{command()}`, on {machine()}.
The same recipe, all-MiniLM-L6-v2 → 2 layers (blocks 0 and 5) with `embedding_mse` on STS-B train sentences, dropout
off, {args.steps} steps with a global batch of {args.batch}, lr 2e-4: once as one process, once as two processes started
by `accelerate launch --config_file configs/accelerate/ddp-cpu.yaml` (half the batch each, gradients averaged by
gloo). Throughput counts training examples per second of the training loop (teacher forwards included).

{table(header, rows)}

- Throughput of 2 processes: **{speeds[2] / speeds[1]:.2f}x** one process on the same {args.threads} threads.
- Largest difference between the two final students, over all {len(one["weights"])} weight tensors:
  **{difference:.2e}** (the 2-process test in tests/engine/test_distributed.py asserts < 1e-5 on a tiny model).
"""
    write_section("ddp-cpu", body)
    print(body)


if __name__ == "__main__":
    main()
