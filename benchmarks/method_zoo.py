"""The method zoo: every single-teacher method on the same SST-2 teacher and 2-layer student, same budget.

Part 1 distils the fine-tuned MiniLM SST-2 teacher (made by ``benchmarks/sst2_minilm.py``) into a student
cut from its blocks 0 and 5, once per method, each alone with its default arguments, plus a few
combinations, all with the same steps, batch, learning rate and seed. Each run is its own process, so
its peak memory (max RSS) is its own. Part 2 compares RankCSE with plain embedding MSE on STS-B with
the packaged MiniLM teacher. Writes the tables into BENCHMARKS.md, sorted, next to the published GKD
ranking (``benchmarks/gkd_published.json``).

    python benchmarks/method_zoo.py [--steps 250] [--out runs/bench-zoo] [--only kd,pkd]

Finished runs are kept in ``--out`` and skipped on a rerun, so an interrupted zoo resumes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, command, machine, shared_data, table, write_section

#: Combinations measured next to the single methods (name -> methods).
COMBINATIONS = {
    "kd + hidden_mse": [{"name": "kd", "temperature": 2.0}, {"name": "hidden_mse"}],
    "kd + hidden_mse + attention": [{"name": "kd", "temperature": 2.0}, {"name": "hidden_mse"}, {"name": "attention"}],
    "kd + minilmv2": [{"name": "kd", "temperature": 2.0}, {"name": "minilmv2"}],
    "kd + ce": [{"name": "kd", "temperature": 2.0}, {"name": "ce"}],
}
#: kdforge method name -> the name in the GKD/GLMD tables.
PUBLISHED_NAME = {
    "kd": "KD",
    "tinybert": "TinyBERT",
    "minilm": "MiniLM",
    "minilmv2": "MiniLMv2",
    "distilbert": "DistilBERT",
    "mobilebert": "MobileBERT",
    "pkd": "PKD",
    "rail_kd": "RAIL-KD",
    "mgskd": "MGSKD",
    "diito": "DIITO",
    "sid": "SID",
    "alp_kd": "ALP-KD",
    "ckd": "CKD",
    "theseus": "Theseus",
    "universal_kd": "Universal-KD",
    "lrc_bert": "LRC-BERT",
    "annealing_kd": "Annealing-KD",
    "continuation_kd": "Continuation-KD",
}


def sst2_recipe(teacher: str, methods: list[dict], steps: int, data: Path, out: Path) -> dict:
    return {
        "name": "zoo",
        "seed": 42,
        "teacher": teacher,
        "student": {"layers": [0, 5]},
        "task": {"name": "classification", "labels": ["0", "1"]},
        "data": {"train": [str(data / "glue_sst2" / "train.tsv")], "eval": str(data / "glue_sst2" / "dev.tsv")},
        "methods": methods,
        "training": {
            "max_steps": steps,
            "batch_size": 32,
            "lr": 1e-4,
            "max_length": 64,
            "warmup_ratio": 0.1,
            "save_every": steps,
            "log_every": 50,
        },
        "output": {"dir": str(out), "export": False, "benchmark": False},
    }


def sts_recipe(methods: list[dict], steps: int, data: Path, out: Path) -> dict:
    stsb = data / "stsb"
    return {
        "name": "zoo-sts",
        "seed": 42,
        "teacher": "minilm",
        "student": {"layers": [0, 5]},
        "task": {"name": "sts"},
        "data": {
            "train": [str(stsb / "sts-train.csv")],
            "eval": str(stsb / "sts-dev.csv"),
            "test": str(stsb / "sts-test.csv"),
        },
        "methods": methods,
        "training": {"max_steps": steps, "batch_size": 64, "lr": 2e-4, "warmup_ratio": 0.05, "save_every": steps},
        "output": {"dir": str(out), "export": False, "benchmark": False},
    }


def run_one(recipe_file: Path) -> None:
    """Child process: run one recipe, add peak memory, write zoo.json next to it."""
    import kdforge
    from kdforge.models.loading import quiet_transformers
    from kdforge.recipe import validate_recipe

    quiet_transformers()
    recipe = validate_recipe(json.loads(recipe_file.read_text()))
    results = kdforge.run(recipe, recipe_file.parent / "run", show=False)
    stage = results["stages"][-1]
    summary = {
        "metrics": stage["metrics"],
        "seconds_per_step": stage["training"]["seconds_per_step"],
        "steps": stage["training"]["steps"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    (recipe_file.parent / "zoo.json").write_text(json.dumps(summary, indent=1))


def launch(name: str, recipe: dict, out: Path) -> dict | None:
    folder = out / name.replace(" ", "").replace("+", "_")
    done = folder / "zoo.json"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "recipe.json").write_text(json.dumps(recipe, indent=1))
        started = time.perf_counter()
        print(f"[zoo] {name} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--one", str(folder / "recipe.json")], cwd=ROOT)
        if proc.returncode != 0:
            print(f"[zoo] {name} failed (exit {proc.returncode}); see above", flush=True)
            return None
        print(f"[zoo] {name} done in {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads(done.read_text())


def applicable_methods(teacher_dir: str) -> tuple[list[str], dict[str, str]]:
    """Single-teacher methods that accept this classifier pair; the others with the reason."""
    from kdforge.engine.pipeline import shape
    from kdforge.errors import IncompatibleError
    from kdforge.methods import METHODS, Pair
    from kdforge.models import build_student, load_model
    from kdforge.recipe import StudentSpec

    teacher = load_model(teacher_dir)
    student, _ = build_student(teacher, StudentSpec(layers=[0, 5]))
    pair = Pair(shape(teacher), shape(student), same_tokenizer=True, teachers=(shape(teacher),))
    usable, skipped = [], {}
    for name in METHODS.names():
        cls = METHODS.get(name)
        if cls.multi_teacher:
            continue
        try:
            cls(cls.Args()).setup(pair)
        except IncompatibleError as err:
            skipped[name] = str(err)
            continue
        usable.append(name)
    return usable, skipped


def published() -> dict:
    path = Path(__file__).with_name("gkd_published.json")
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="runs/bench-sst2/stages/teacher/model")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--sts-steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-zoo"))
    parser.add_argument("--only", default="", help="comma-separated method names (default: all)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one)
        return
    if not (Path(args.teacher) / "config.json").is_file():
        sys.exit(f"no SST-2 teacher at {args.teacher}; run benchmarks/sst2_minilm.py first (its stage 1 makes it)")
    data = shared_data()
    out = args.out.resolve()
    teacher = str(Path(args.teacher).resolve())

    names, skipped = applicable_methods(teacher)
    only = {n for n in args.only.split(",") if n}
    runs = {name: [{"name": name}] for name in names if not only or name in only}
    if not only:
        runs |= COMBINATIONS
    results = {
        name: launch(name, sst2_recipe(teacher, methods, args.steps, data, out / "sst2"), out / "sst2")
        for name, methods in runs.items()
    }

    sts_runs = {
        "embedding_mse": [{"name": "embedding_mse"}],
        "rankcse": [{"name": "rankcse"}],
        # embedding_mse averages over the 384 dimensions of unit-length embeddings (values ~1e-3), so
        # at weight 1 it does not move a student that rankcse drives; 384 makes it the squared distance.
        "rankcse + embedding_mse x384": [{"name": "rankcse"}, {"name": "embedding_mse", "weight": 384}],
    }
    sts = (
        {}
        if only
        else {
            name: launch(name, sts_recipe(methods, args.sts_steps, data, out / "sts"), out / "sts")
            for name, methods in sts_runs.items()
        }
    )
    report(results, skipped, sts, args, published())


def report(results: dict, skipped: dict, sts: dict, args, gkd: dict) -> None:
    finished = {k: v for k, v in results.items() if v}
    if not finished:
        sys.exit("no zoo run finished")
    teacher = next(iter(finished.values()))["metrics"]["teacher"]["eval"]["accuracy"]
    ranking = gkd.get("methods", {})
    rows = []
    for name, r in sorted(finished.items(), key=lambda kv: -kv[1]["metrics"]["student"]["eval"]["accuracy"]):
        acc = r["metrics"]["student"]["eval"]["accuracy"]
        paper = ranking.get(PUBLISHED_NAME.get(name, ""), {})
        rows.append(
            [
                name,
                acc,
                f"{acc / teacher * 100:.1f}%",
                r["seconds_per_step"] * 1000,
                r["peak_rss_mb"],
                f"{paper['average']:.2f} (#{paper['rank']})" if paper else "–",
            ]
        )
    failed = [n for n, v in results.items() if not v]
    not_applicable = "\n".join(f"  - `{n}`: {reason}" for n, reason in sorted(skipped.items()))
    setting = gkd.get("setting", "")
    body = f"""## Method zoo: every single-teacher method, SST-2, same budget (issue 3)

Command: `{command()}`, on {machine()}.
Teacher: MiniLM-L6 fine-tuned on SST-2 by `benchmarks/sst2_minilm.py` (dev accuracy {teacher:.2f}). Student: its
blocks 0 and 5 (2 layers, weights copied). Every row: {args.steps} steps of batch 32 (max length 64, lr 1e-4,
warm-up 10%, seed 42), each method **alone** with its default arguments unless it is a combination; SST-2 dev
accuracy after training; time per step and peak resident memory (max RSS of the run's own process, teacher and
data included) on this machine. Sorted by accuracy. The last column is the GKD ranking where the method is in
it: the SuperGLUE average of the GKD/GLMD authors' own runs ({setting}), recomputed from their
published fine-tuning logs (`benchmarks/gkd_published.json` says how; the papers' tables themselves could not
be checked here). Different task, model and budget: it shows which methods the authors' runs favoured, not
what to expect on SST-2.

{table(["method(s)", "dev accuracy", "of teacher", "ms / step", "peak RSS MB", "GKD logs: SuperGLUE avg (rank)"], rows)}

- Methods that do not apply to a classifier pair (they say why before training):
{not_applicable or "  - none"}
{"- Failed runs: " + ", ".join(failed) if failed else ""}
"""
    if sts:
        sts_rows = [
            [
                name,
                r["metrics"]["student"]["eval"]["spearman"],
                r["metrics"]["student"]["test"]["spearman"],
                r["seconds_per_step"] * 1000,
            ]
            for name, r in sorted(sts.items(), key=lambda kv: -kv[1]["metrics"]["student"]["test"]["spearman"])
            if r
        ]
        t = next(r for r in sts.values() if r)["metrics"]["teacher"]
        dev, test = t["eval"]["spearman"], t["test"]["spearman"]
        body += f"""
### RankCSE vs embedding MSE on STS-B (packaged MiniLM teacher: dev {dev:.2f}, test {test:.2f})

2-layer student (teacher blocks 0 and 5), {args.sts_steps} steps of batch 64 on the STS-B train sentences, lr 2e-4.
Spearman x100 of cosine similarity against gold scores.

{table(["method(s)", "STS-B dev", "STS-B test", "ms / step"], sts_rows)}
"""
    write_section("method-zoo", body)
    print(body)


if __name__ == "__main__":
    main()
