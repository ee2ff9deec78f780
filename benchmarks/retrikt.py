"""RetriKT vs plain KD vs labels only, for a student of ~1% of its teacher, on four low-resource tasks.

For each of SuperGLUE CB, GLUE RTE, COPA and GLUE MRPC, runs recipes/<task>-retrikt.yaml with two
baseline stages inserted before its RetriKT stage, all in one run with one teacher and one store:

1. ``labels``: the pQRNN student trained with cross-entropy on the task's labelled examples only;
2. ``kd``: the same student with plain KD (soft targets, T = 2) on the knowledge stage's samples
   (the labelled examples and their perturbed copies: the same transfer set RetriKT gets), reading the
   teacher's distributions from the store (``stored_kd``) instead of running the teacher again;
3. ``retrikt``: the student trained to retrieve from the sample store (methods/retrikt.py).

All three take the same number of optimizer steps. ``--student-seeds N ...`` trains the three students again
with those training seeds on the same teacher and store (one dev example is worth 0.25 to 1.8 points on these
splits): the main table stays the recipe's seed, a second one gives the means over the seeds. Reports dev
accuracy, the share of the label-only-to-teacher gap each student closes, the store's size and the latency
retrieval adds per query (batch 1, the exported student with and without its store), and writes BENCHMARKS.md.

    python benchmarks/retrikt.py [--out runs/bench-retrikt] [--only cb rte copa mrpc] [--joined-pairs | --pooled-pairs]
                                 [--key embedding] [--seed N] [--student-seeds N ...] [--unlabeled FILE ...]
                                 [--table [--latency]]

The recipes' pQRNN students pool the two texts of a pair apart (``compare_pairs: true``; COPA's read a
pair as one sequence, its second text holding both alternatives) and their RetriKT student retrieves by
the features its classifier layer reads (``key: features``; RTE's by the pair's word overlap, ``key: overlap``,
with lambda fitted on held-out examples, ``held_out: 0.1``). Earlier settings, each measured into its
own ``--section`` of BENCHMARKS.md: ``--joined-pairs`` reads a pair as one sequence (``compare_pairs:
false``, for all three students), ``--pooled-pairs`` pools them apart on every task (COPA's before);
``--key embedding`` retrieves by the mean of the student's last
hidden states. ``--seed N`` replaces the recipes' seed (teacher, store and students all change with
it), to see how far one seed's figures move; ``benchmarks/retrikt_seeds.py`` averages such runs.
``--unlabeled FILE`` has the teacher label in-domain text without labels into the store too.
``--table --latency`` measures the latency retrieval adds again, for figures taken on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from _common import machine, table, write_section

import kdforge
from kdforge.methods import METHODS
from kdforge.models import load_model
from kdforge.models.loading import quiet_transformers
from kdforge.models.views import RETRIEVAL_KEYS
from kdforge.recipe import load_recipe
from kdforge.recipe.schema import DataSource, Recipe
from kdforge.tasks.data import load_source, texts_and_pairs

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TASKS = {"cb": "SuperGLUE CB", "rte": "GLUE RTE", "copa": "COPA", "mrpc": "GLUE MRPC"}
STUDENTS = ("labels", "kd", "retrikt")
STUDENT_SEEDS = ()  # besides the recipe's own (--student-seeds): the students again, same teacher and store
LATENCY_QUERIES = 100
OUT, SECTION = Path("runs/bench-retrikt"), "retrikt"  # the recipes' own run and its BENCHMARKS.md section


def with_baselines(recipe: Recipe) -> Recipe:
    """The recipe with the label-only and plain-KD students inserted before its RetriKT stage."""
    raw = recipe.model_dump(mode="json", exclude_defaults=True)
    stages = raw["stages"]
    retrikt = stages[-1]
    student, training = retrikt["student"], dict(retrikt.get("training", {}))
    labels = {
        "name": "labels",
        "teacher": "stage:teacher",
        "student": student,
        "task": retrikt["task"],
        "data": stages[0]["data"],  # the labelled examples only
        "methods": [{"name": "ce"}],
        "training": training,
    }
    # plain KD from the distributions the knowledge stage stored: the live teacher's, without running it
    kd = {**retrikt, "name": "kd", "methods": [{"name": "stored_kd", "temperature": 2.0}]}
    raw["stages"] = [*stages[:-1], labels, kd, retrikt]
    return Recipe.model_validate(raw)


def student_seed(recipe: Recipe, seed: int) -> Recipe:
    """The three students again with training seed ``seed`` (row order, dropout), as stages NAME-sSEED after
    the same teacher and store; nothing exported, so the run's student stays the recipe's own."""
    raw = recipe.model_dump(mode="json", exclude_defaults=True)
    students = []
    for stage in raw["stages"][-len(STUDENTS) :]:
        training = {**stage.get("training", {}), "seed": seed}
        students.append({**stage, "name": f"{stage['name']}-s{seed}", "training": training})
    raw["stages"] = [*raw["stages"][: -len(STUDENTS)], *students]
    raw.setdefault("output", {})["export"] = False
    return Recipe.model_validate(raw)


def same_budget(recipe: Recipe, store_rows: int) -> Recipe:
    """The label-only stage gets as many optimizer steps as the students trained on the store."""
    labels, _, retrikt = recipe.stages[-len(STUDENTS) :]
    steps = int(retrikt.training.epochs * -(-store_rows // retrikt.training.batch_size))
    labels.training = retrikt.training.model_copy(update={"max_steps": steps})
    return recipe


def dev_split(name: str):
    """The task's dev/validation split, as its recipe names it."""
    return load_source(load_recipe(RECIPES / f"{name}-retrikt.yaml").stages[0].data.eval, "dev")


def latency_added(student_dir: Path, texts: list[str], pairs: list[str] | None) -> dict:
    """Median batch-1 latency of the exported student with its store and without it (ms/query)."""
    model = load_model(str(student_dir))
    head = model.retrieval
    times = {"with": [], "without": []}
    for i in range(min(LATENCY_QUERIES, len(texts))):
        pair = [pairs[i]] if pairs else None
        for mode in ("with", "without") if i % 2 == 0 else ("without", "with"):
            model.retrieval = head if mode == "with" else None
            started = time.perf_counter()
            model.predict([texts[i]], pair, batch_size=1)
            times[mode].append((time.perf_counter() - started) * 1000)
    model.retrieval = head
    return {mode: statistics.median(values) for mode, values in times.items()}


def task_recipe(
    name: str,
    joined_pairs: bool | None = None,
    key: str | None = None,
    seed: int | None = None,
    unlabeled: list[Path] | None = None,
) -> Recipe:
    """The task's recipe, with what the options override: ``joined_pairs`` True or False, its pQRNN
    student reads a pair as one sequence or pools its texts apart (None: as the recipe says); ``key``, what
    the RetriKT student retrieves by; ``seed``; ``unlabeled`` files join the knowledge stage's text."""
    recipe = load_recipe(RECIPES / f"{name}-retrikt.yaml")
    if seed is not None:
        recipe.seed = seed
    if unlabeled:
        knowledge = recipe.stages[1].knowledge
        knowledge.unlabeled = [*knowledge.unlabeled, *(DataSource(path=str(p)) for p in unlabeled)]
    stage = recipe.stages[-1]
    if joined_pairs is not None:
        stage.student.pqrnn = stage.student.pqrnn.model_copy(update={"compare_pairs": not joined_pairs})
    if key:
        stage.methods = [m.model_copy(update={"key": key}) if m.name == "retrikt" else m for m in stage.methods]
    return recipe


def retrieval_settings(recipe: Recipe) -> dict:
    """``k``, ``tau`` and ``key`` of the RetriKT method of ``recipe``'s last stage, defaults filled in: for
    the scripts that retrieve or train the way the run did."""
    spec = next(m for m in recipe.stages[-1].methods if m.name == "retrikt")
    args = METHODS.get("retrikt").parse_args(spec.args)
    return {"k": args.k, "tau": args.tau, "key": args.key}


def ran_recipe(run: Path) -> Recipe:
    """The recipe a task's finished run used (its ``recipe.json``)."""
    return Recipe.model_validate(json.loads((run / "recipe.json").read_text()))


def student_accuracy(results: dict, suffix: str = "") -> dict[str, float]:
    """Dev accuracy of the labels, KD and RetriKT students of one run (stages NAME + suffix)."""
    by_stage = {s["name"]: s for s in results["stages"]}
    return {n: by_stage[n + suffix]["metrics"]["student"]["eval"]["accuracy"] for n in STUDENTS}


def run_task(
    name: str,
    out: Path,
    joined_pairs: bool | None = None,
    key: str | None = None,
    seed: int | None = None,
    unlabeled: list[Path] | None = None,
    student_seeds: tuple[int, ...] = STUDENT_SEEDS,
) -> dict:
    recipe = with_baselines(task_recipe(name, joined_pairs, key, seed, unlabeled))
    target = out / name
    # The knowledge stage first, so the label-only student's step budget can match the store's size.
    knowledge = Recipe.model_validate(
        recipe.model_dump(mode="json", exclude_defaults=True)
        | {"stages": [s.model_dump(mode="json", exclude_defaults=True) for s in recipe.stages[:2]]}
    )
    knowledge.output.export = False
    first = kdforge.run(knowledge, target, show=False)
    store_rows = first["stages"][1]["samples"]
    per_seed = {}
    # the extra seeds first: the recipe's own run writes the run's results.json and exports its student
    for extra in [s for s in student_seeds if s != recipe.seed]:
        ran = kdforge.run(same_budget(student_seed(recipe, extra), store_rows), target, show=True)
        per_seed[extra] = student_accuracy(ran, f"-s{extra}")
    results = kdforge.run(same_budget(recipe, store_rows), target, show=True)
    by_stage = {s["name"]: s for s in results["stages"]}
    accuracy = student_accuracy(results)
    per_seed = {recipe.seed: accuracy, **per_seed}
    teacher = by_stage["retrikt"]["metrics"]["teacher"]["eval"]["accuracy"]
    dev = load_source(recipe.stages[0].data.eval, "dev")
    latency = latency_added(target / "student", *texts_and_pairs(dev))
    store = by_stage["knowledge"]
    return {
        "task": name,
        "teacher": teacher,
        **accuracy,
        "student_seeds": per_seed,
        "teacher_parameters": results["teacher"]["parameters"],
        "student_parameters": results["student"]["parameters"],
        "store_samples": store["samples"],
        "store_megabytes": sum(p.stat().st_size for p in (target / "student" / "retrieval").rglob("*") if p.is_file())
        / 1e6,
        "teacher_agrees_with_intended": store["teacher_agrees_with_intended_label"],
        "latency_ms": latency,
        "dev_rows": len(dev),
    }


def dev_figures(run: Path, name: str) -> tuple[list[float], tuple[float, float]]:
    """On the dev split (x100): how often each student predicts what the teacher predicts, both texts
    read; and the accuracy of the RetriKT student's two halves on their own: its own head, and the
    similarity-weighted teacher distributions it retrieves (what the learned mixture combines)."""
    dev = dev_split(name)
    texts, pairs = texts_and_pairs(dev)
    teacher = load_model(str(run / "stages" / "teacher" / "model")).predict(texts, pairs).argmax(-1)
    students = {stage: load_model(str(run / "stages" / stage / "model")) for stage in ("labels", "kd", "retrikt")}
    shares = [float((s.predict(texts, pairs).argmax(-1) == teacher).float().mean()) * 100 for s in students.values()]
    retrikt = students["retrikt"]
    head, retrikt.retrieval = retrikt.retrieval, None
    own = retrikt.predict(texts, pairs).argmax(-1)
    with torch.no_grad():
        retrieved = head.retrieved(retrikt.rows(head.key, texts, pairs)).argmax(-1)
    gold = gold_labels(retrikt, dev)
    return shares, (float((own == gold).float().mean()) * 100, float((retrieved == gold).float().mean()) * 100)


def gold_labels(model, dev) -> torch.Tensor:
    """The dev split's labels as the class ids of ``model`` (by its ``id2label`` names)."""
    names = [str(model.config.id2label[i]) for i in range(model.num_labels)]
    return torch.tensor([names.index(str(label)) for label in dev["label"]])


def unlabeled_text(recipes: dict[str, dict]) -> str:
    """The table's note on the unlabeled in-domain text (task: file) the knowledge stages read, if any."""
    used = []
    for name, recipe in recipes.items():
        stages = recipe["stages"]
        files = [Path(s["path"]) for stage in stages for s in (stage.get("knowledge") or {}).get("unlabeled", [])]
        used += [f"{name}: {f.parent.name}/{f.name}" for f in files]
    return f", and unlabeled in-domain text ({'; '.join(used)})" if used else ""


def pair_reading(recipes: dict[str, dict]) -> str:
    """How the runs' pQRNN students read a pair: both texts as one sequence, each pooled apart, or
    pooled apart with each text's tokens aligned with the other's (and whether tokens are flagged when
    the other text holds them, and their shares counted), and on which tasks."""
    readings = {
        False: "a pair read as one sequence (`compare_pairs: false`)",
        True: "each text of a pair pooled apart (`compare_pairs: true`)",
        "aligned": "each text of a pair pooled apart, plus what its tokens find in the other text "
        "(`compare_pairs: aligned`)",
    }
    tasks_of: dict[str, list[str]] = {}
    for name, recipe in recipes.items():
        pqrnn = recipe["stages"][-1]["student"].get("pqrnn") or {}
        reading = readings[pqrnn.get("compare_pairs", False)]
        if pqrnn.get("exact_match"):
            reading += ", each token flagged when the other text holds it too (`exact_match: true`)"
        if pqrnn.get("word_overlap"):
            reading += ", the classifier reading each text's share of such tokens (`word_overlap: true`)"
        tasks_of.setdefault(reading, []).append(name)
    return ", " + most_then_others(tasks_of)


def retrikt_losses(recipes: dict[str, dict]) -> str:
    """The RetriKT stage's losses as the runs' recipes give them, with the tasks of each, e.g.
    "`retrikt` x0.25 + `stored_kd` (T = 2) x1 (mrpc)"."""
    tasks_of: dict[str, list[str]] = {}
    for name, recipe in recipes.items():
        tasks_of.setdefault(describe_methods(recipe["stages"][-1]["methods"]), []).append(name)
    if len(tasks_of) == 1:
        return next(iter(tasks_of))
    return "; ".join(f"{losses} ({', '.join(names)})" for losses, names in tasks_of.items())


KEY_READINGS = {
    "features": "the features its classifier layer reads (`key: features`)",
    "embedding": "its sentence embedding, the mean of its last hidden states (`key: embedding`)",
    "overlap": "the share of each text's words the other text holds, nothing learned (`key: overlap`)",
}


def retrieval_reading(recipes: dict[str, dict]) -> str:
    """What the runs' RetriKT students retrieve by, and where lambda is fitted on held-out examples
    instead of learned, with the tasks of each when they differ."""
    tasks_of: dict[str, list[str]] = {}
    for name, recipe in recipes.items():
        spec = next(m for m in recipe["stages"][-1]["methods"] if m["name"] == "retrikt")
        reading = KEY_READINGS[spec.get("key", METHODS.get("retrikt").Args.model_fields["key"].default)]
        if spec.get("held_out"):
            reading += (
                f", lambda fitted after training on {spec['held_out']:.0%} of the training examples kept out of it "
                "(`held_out`)"
            )
        tasks_of.setdefault(reading, []).append(name)
    return most_then_others(tasks_of)


def most_then_others(tasks_of: dict[str, list[str]]) -> str:
    """The setting most tasks share, then "on TASKS, SETTING" for each other one (the one setting alone
    when all share it)."""
    most = max(tasks_of, key=lambda reading: len(tasks_of[reading]))
    others = [f"on {', '.join(names)}, {reading}" for reading, names in tasks_of.items() if reading != most]
    return "; ".join([most, *others])


def describe_methods(methods: list[dict]) -> str:
    """A stage's methods as a recipe gives them, e.g. "`retrikt` x0.25 + `stored_kd` (T = 2) x1"."""
    parts = []
    for method in methods:
        extra = f" (T = {method['temperature']:g})" if "temperature" in method else ""
        extra += f" (`student_kd: {method['student_kd']:g}`)" if method.get("student_kd") else ""
        parts.append(f"`{method['name']}`{extra} x{method.get('weight', 1.0):g}")
    return " + ".join(parts)


def seed_margins(row: dict) -> str:
    """RetriKT's margin over KD with each student seed (the recipe's first), e.g. "+1.08 / -0.36"."""
    seeds = row.get("student_seeds") or {"-": row}
    return " / ".join(f"{s['retrikt'] - s['kd']:+.2f}" for s in seeds.values())


def seeds_table(rows: dict[str, dict]) -> str:
    """The students' means over the training seeds of the tasks trained with several (same teacher and store)."""
    seeded = {n: rows[n]["student_seeds"] for n in TASKS if len(rows.get(n, {}).get("student_seeds", {})) > 1}
    if not seeded:
        return ""
    header = [
        "task",
        "student seeds",
        "teacher",
        "labels only",
        "plain KD",
        "RetriKT",
        "RetriKT - KD: mean (sd)",
        "RetriKT wins",
        "gap closed",
    ]
    body, closed, beats, ties = [], [], [], []
    for name, seeds in seeded.items():
        means = {n: statistics.fmean(s[n] for s in seeds.values()) for n in STUDENTS}
        row = {"teacher": rows[name]["teacher"], **means}
        margins = [s["retrikt"] - s["kd"] for s in seeds.values()]
        margin = statistics.fmean(margins)
        wins, tied = sum(m > 0 for m in margins), sum(m == 0 for m in margins)
        closed.append(gap_closed(row, "retrikt"))
        # a mean margin under one dev example is no win, whatever its sign
        if abs(margin) < 100 / rows[name]["dev_rows"]:
            ties.append(name)
        elif margin > 0:
            beats.append(name)
        body.append(
            [
                TASKS[name],
                ", ".join(str(k) for k in seeds),
                row["teacher"],
                *means.values(),
                f"{margin:+.2f} ({statistics.stdev(margins):.2f})",
                f"{wins} of {len(seeds)}" + (f" ({tied} tied)" if tied else ""),
                f"{gap_closed(row, 'kd'):.0f}% / {gap_closed(row, 'retrikt'):.0f}%",
            ]
        )
    return f"""
Students trained again with other training seeds (`--student-seeds`: row order and dropout; the same teacher,
store and initial weights, which the student builder draws from seed 0), means over the seeds;
sd: the margins' standard deviation across the seeds; gap closed: KD / RetriKT, by the means. A task counts
as a win when RetriKT's mean margin is at least one dev example.

{table(header, body)}

By the means, RetriKT closes {statistics.fmean(c for c in closed if c == c):.0f}% of the label-only-to-teacher gap on
average and beats plain KD on {len(beats)} of {len(seeded)} tasks ({", ".join(beats) or "none"}){within(ties)}.
"""


def within(ties: list[str]) -> str:
    """The verdict's note on the tasks whose mean margin is under one dev example."""
    if not ties:
        return ""
    return f"; on {', '.join(ties)} the mean margin is under one dev example, a tie"


def gap_closed(row: dict, student: str) -> float:
    gap = row["teacher"] - row["labels"]
    return (row[student] - row["labels"]) / gap * 100 if gap > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", choices=list(TASKS), help="run these only (the table keeps earlier rows)")
    parser.add_argument("--table", action="store_true", help="only rewrite the table from the finished runs")
    parser.add_argument("--section", default=SECTION, help="BENCHMARKS.md section the table goes to")
    pairs = parser.add_mutually_exclusive_group()
    pairs.add_argument(
        "--joined-pairs",
        dest="joined_pairs",
        action="store_const",
        const=True,
        help="compare_pairs: false on every task",
    )
    pairs.add_argument(
        "--pooled-pairs",
        dest="joined_pairs",
        action="store_const",
        const=False,
        help="compare_pairs: true on every task",
    )
    parser.add_argument("--key", choices=RETRIEVAL_KEYS, help="what the RetriKT student retrieves by")
    parser.add_argument("--seed", type=int, help="replace the recipes' seed")
    parser.add_argument(
        "--student-seeds",
        nargs="*",
        type=int,
        default=list(STUDENT_SEEDS),
        help="train the three students again with these training seeds, same teacher and store (a second table "
        "averages them)",
    )
    parser.add_argument(
        "--unlabeled",
        nargs="*",
        type=Path,
        help="in-domain files without labels the teacher labels too (with --only TASK)",
    )
    parser.add_argument(
        "--latency", action="store_true", help="with --table: measure the added latency again (on an idle machine)"
    )
    args = parser.parse_args()
    quiet_transformers()
    summary_file = args.out / "summary.json"
    for name in [] if args.table else args.only or TASKS:
        row = run_task(
            name, args.out, args.joined_pairs, args.key, args.seed, args.unlabeled, tuple(args.student_seeds)
        )
        # read again: other tasks may be running in parallel processes (--only)
        rows = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        rows[name] = row
        summary_file.write_text(json.dumps(rows, indent=2))
    rows = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    if args.table and args.latency:
        for name, row in rows.items():
            dev = dev_split(name)
            row["latency_ms"] = latency_added(args.out / name / "student", *texts_and_pairs(dev))
        summary_file.write_text(json.dumps(rows, indent=2))
    # An earlier run of the recipes with student_kd: 0 (the paper's loss alone), where one was kept.
    earlier = args.out / "summary-mixture-loss-only.json"
    mixture_only = json.loads(earlier.read_text()) if earlier.is_file() else {}

    header = [
        "task (dev rows)",
        "teacher",
        "labels only",
        "plain KD",
        "RetriKT",
        "RetriKT, mixture loss only",
        "RetriKT's own head / its retrieval alone",
        "RetriKT - KD, per student seed",
        "gap closed: KD / RetriKT",
        "agreement with the teacher: labels / KD / RetriKT",
        "student / teacher parameters",
        "store: samples, MB",
        "ms/query without / with retrieval",
    ]
    body, closed = [], []
    for name, title in TASKS.items():
        if name not in rows:
            continue
        r = rows[name]
        shares, halves = dev_figures(args.out / name, name)
        closed.append(gap_closed(r, "retrikt"))
        body.append(
            [
                f"{title} ({r['dev_rows']})",
                r["teacher"],
                r["labels"],
                r["kd"],
                r["retrikt"],
                mixture_only.get(name, {}).get("retrikt", "-"),
                " / ".join(f"{a:.2f}" for a in halves),
                seed_margins(r),
                f"{gap_closed(r, 'kd'):.0f}% / {gap_closed(r, 'retrikt'):.0f}%",
                " / ".join(f"{a:.1f}" for a in shares),
                f"{r['student_parameters'] / 1e6:.2f}M / {r['teacher_parameters'] / 1e6:.1f}M "
                f"({r['student_parameters'] / r['teacher_parameters'] * 100:.1f}%)",
                f"{r['store_samples']:,}, {r['store_megabytes']:.1f}",
                f"{r['latency_ms']['without']:.2f} / {r['latency_ms']['with']:.2f}",
            ]
        )
    beats = [name for name in rows if rows[name]["retrikt"] > rows[name]["kd"]]
    closed = [c for c in closed if c == c]  # a task whose label-only student already matches the teacher has no gap
    verdict = (
        f"RetriKT beats plain KD on {len(beats)} of {len(rows)} tasks ({', '.join(beats) or 'none'}); "
        f"mean share of the label-only-to-teacher gap it closes: {statistics.fmean(closed):.0f}% (goal: >= 50%)."
        if closed
        else ""
    )
    options = {True: " --joined-pairs", False: " --pooled-pairs", None: ""}[args.joined_pairs]
    options += f" --key {args.key}" if args.key else ""
    options += f" --seed {args.seed}" if args.seed is not None else ""
    options += "".join(f" --unlabeled {p}" for p in args.unlabeled or [])
    if args.student_seeds != list(STUDENT_SEEDS):
        options += " --student-seeds" + "".join(f" {n}" for n in args.student_seeds)
    # a run of other settings or into another folder or section names them; the recipes' own run does not
    elsewhere = args.out != OUT or args.section != SECTION
    variant = f"{options} --out {args.out} --section {args.section}" if options or elsewhere else ""
    ran = {name: json.loads((args.out / name / "recipe.json").read_text()) for name in rows}
    pooled = pair_reading(ran)
    keyed = retrieval_reading(ran)
    title = "RetriKT: students of ~1% of the teacher on low-resource tasks" + (f" ({args.section})" if variant else "")
    write_section(
        args.section,
        f"""## {title}

`python benchmarks/retrikt.py{variant}` (here each task as `--only TASK`, two at a time, then `--table`) on
{machine()}. Teacher: all-MiniLM-L6-v2 fine-tuned on each task (kdforge
`finetune` stage); its knowledge: the labelled examples and perturbed copies of them (word
replacement p = 0.3, character distortion 0.05){unlabeled_text(ran)}, labelled by the teacher
(knowledge source b). Student: a pQRNN (no embedding table){pooled}. Accuracy x100 on the dev/validation
split; the three students take the same number of optimizer steps; "gap closed" is (student - labels only) /
(teacher - labels only) (undefined, "nan", where the label-only student already scores as high as the teacher);
agreement: how often a student's dev prediction equals the teacher's. Plain KD reads the teacher's distributions
from the store (`stored_kd`, T = 2: the same targets as running the teacher). RetriKT trains with
{retrikt_losses(ran)} (the mixture loss, and KD on the student's own prediction), retrieving by
{keyed}; "mixture loss only" is an earlier run with the paper's loss alone, where one was kept.
Latency: batch 1, median of {LATENCY_QUERIES} dev queries, exported student with its store (FAISS flat
inner-product index) and without it.
"Own head / retrieval alone": the trained RetriKT student's two halves scored separately (lambda = 1 and 0).

{table(header, body)}

{verdict}
{seeds_table(rows)}""",
    )
    print(verdict)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
