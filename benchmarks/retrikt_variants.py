"""Try other RetriKT losses on a finished benchmarks/retrikt.py run, reusing its teacher, store and baselines.

Each variant is one more student stage, appended after the recipe's own RetriKT stage and named after
the variant (NAME-sSEED for another student seed), with the same student, data and step budget. Only
that stage trains; the teacher, the store and the label-only and KD students are reused. The run's
own results.json and recipe.json are rewritten afterwards by the recipe itself, so ``retrikt.py
--table`` still reads the recipe's students.

    python benchmarks/retrikt_variants.py --only mrpc --variants rkd2 rkd2w25 --student-seeds 42 1

The variants' stage fingerprints include the recipe's RetriKT stage, so they are reused only while
the recipe is unchanged (the table of BENCHMARKS.md was made with the recipes of commit 7d18868).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import command, machine, table, write_section
from retrikt import (
    TASKS,
    describe_methods,
    retrieval_settings,
    retrikt_losses,
    same_budget,
    student_accuracy,
    student_seed,
    task_recipe,
    with_baselines,
)

import kdforge
from kdforge.models.loading import quiet_transformers
from kdforge.recipe.schema import Recipe
from kdforge.store.samples import open_samples

KD = {"name": "stored_kd", "temperature": 2.0}
VARIANTS = {  # stage name: the weight of the mixture loss, next to plain KD's loss on the own head
    "rkd2": 1.0,
    "rkd2w25": 0.25,
}


def variant_methods(name: str, retrieval: dict) -> list[dict]:
    """The variant's methods, retrieving as the recipe does (``retrieval``: its k, tau and key)."""
    return [{"name": "retrikt", **retrieval, "weight": VARIANTS[name]}, KD]


def with_variant(recipe: Recipe, name: str, suffix: str) -> Recipe:
    """The recipe with one more student stage, ``name + suffix``, training the variant's methods."""
    raw = recipe.model_dump(mode="json", exclude_defaults=True)
    methods = variant_methods(name, retrieval_settings(recipe))
    raw["stages"].append({**raw["stages"][-1], "name": name + suffix, "methods": methods})
    raw.setdefault("output", {})["export"] = False
    return Recipe.model_validate(raw)


def run_variants(task: str, out: Path, names: list[str], seeds: list[int]) -> list[list]:
    target = out / task
    base = with_baselines(task_recipe(task))
    rows = len(open_samples(target / "stages" / "knowledge" / "store"))
    found = []
    for seed in seeds:
        recipe = same_budget(base if seed == base.seed else student_seed(base, seed), rows)
        suffix = "" if seed == base.seed else f"-s{seed}"  # student_seed's stage names
        variants = []
        for name in names:
            ran = kdforge.run(with_variant(recipe, name, suffix), target, show=True)
            variants.append(next(s for s in ran["stages"] if s["name"] == name + suffix))
        students = student_accuracy(ran, suffix)  # any variant's run reports the recipe's students too
        found.append([task, seed, *students.values(), *(v["metrics"]["student"]["eval"]["accuracy"] for v in variants)])
    kdforge.run(same_budget(base, rows), target, show=False)  # the run's results.json is the recipe's again
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-retrikt"))
    parser.add_argument("--only", nargs="*", choices=list(TASKS), default=["mrpc"])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--student-seeds", nargs="*", type=int, default=[42, 1])
    parser.add_argument("--section", default="retrikt-variants")
    args = parser.parse_args()
    quiet_transformers()
    rows = [row for task in args.only for row in run_variants(task, args.out, args.variants, args.student_seeds)]
    (args.out / "variants.json").write_text(json.dumps(rows, indent=2))
    ran = {task: json.loads((args.out / task / "recipe.json").read_text()) for task in args.only}
    retrieval = retrieval_settings(task_recipe(args.only[0]))
    described = "; ".join(f"`{n}`: {describe_methods(variant_methods(n, retrieval))}" for n in args.variants)
    write_section(
        args.section,
        f"""## RetriKT variants: other losses for the RetriKT student

`{command()}` on {machine()}. Each variant trains the RetriKT student again on the same store, with the
same step budget, next to the run's own students: plain KD is `stored_kd` at T = 2, the recipe's RetriKT
trains with {retrikt_losses(ran)}. Variants: {described}.
Accuracy x100 on dev.

{table(["task", "student seed", "labels only", "plain KD", "RetriKT (recipe)", *args.variants], rows)}
""",
    )


if __name__ == "__main__":
    main()
