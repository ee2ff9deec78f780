"""The ``kdforge`` command: thin over the library (parse, call, print).

Errors meant for the user print as one line and exit 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kdforge.errors import KdforgeError

app = typer.Typer(
    help="Distil a large pre-trained language model into a small, fast student.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()
_state = {"debug": False}


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


def _guard(action: Callable[[], Any]) -> Any:
    """Run ``action``; turn errors into one line and an exit code."""
    try:
        return action()
    except KdforgeError as error:
        if _state["debug"]:
            raise
        err.print(f"[bold red]kdforge: error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("kdforge: interrupted; run the same command again to resume from the last checkpoint")
        raise typer.Exit(130) from None
    except Exception as error:  # a kdforge bug: still one line unless --debug
        if _state["debug"]:
            raise
        first = str(error).splitlines()[0] if str(error) else ""
        err.print(
            f"[bold red]kdforge: internal error:[/] {type(error).__name__}: {first} "
            "(rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: output.dir or runs/NAME).")
    ] = None,
) -> None:
    """Run a recipe: train every stage, evaluate teacher vs student, export the student."""
    from kdforge import run as run_recipe
    from kdforge.recipe import load_recipe

    _guard(lambda: run_recipe(load_recipe(recipe), str(out_dir) if out_dir else None))


@app.command()
def validate(recipe: Annotated[Path, typer.Argument(help="YAML recipe.")]) -> None:
    """Check a recipe without running it."""
    from kdforge.recipe import load_recipe

    loaded = _guard(lambda: load_recipe(recipe))
    stages = ", ".join(f"{s.name} ({s.kind}: {', '.join(m.name for m in s.methods)})" for s in loaded.stages)
    out.print(f"{recipe}: valid; stages: {stages}", highlight=False)


@app.command()
def quickstart(
    data: Annotated[str | None, typer.Option(help="STS file or folder: also score against gold similarity.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/quickstart"),
    epochs: Annotated[float, typer.Option(help="Passes over the packaged sentences.")] = 8.0,
) -> None:
    """Distil the packaged MiniLM teacher into a 2-layer student, offline, and compare them."""
    from kdforge import run as run_recipe
    from kdforge.quickstart import quickstart_recipe

    def action() -> None:
        recipe = quickstart_recipe(out_dir, data=data, epochs=epochs)
        (out_dir / "quickstart.yaml").write_text(_to_yaml(recipe))
        run_recipe(recipe, str(out_dir))

    _guard(action)


@app.command("eval")
def evaluate(
    model: Annotated[str, typer.Argument(help="Model folder, alias (minilm) or hub id.")],
    task: Annotated[str, typer.Option(help="sts | classification")],
    data: Annotated[str, typer.Option(help="Data file or folder.")],
    split: Annotated[str, typer.Option(help="Split to read when --data is a folder.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score a model on a labelled dataset."""
    from kdforge.engine.pipeline import evaluate_model

    def action() -> dict:
        return evaluate_model(model, task, _data_source(data, split), split)

    metrics = _guard(action)
    if as_json:
        print(json.dumps({"model": model, "task": task, "data": data, "split": split, "metrics": metrics}))
        return
    table = Table(title=f"{model} on {data} ({split})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.2f}")
    out.print(table)


def _data_source(data: str, split: str):
    from kdforge.recipe.schema import DataSource

    try:
        return DataSource.model_validate({"path": data, "split": split})
    except ValueError as error:
        raise KdforgeError(f"--data: {str(error).splitlines()[-1].strip()}") from None


@app.command("export")
def export_model(
    model: Annotated[str, typer.Argument(help="Model folder, alias (minilm) or hub id.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="hf | sentence-transformers | static-table | onnx | onnx-int8 (default: by kind)."
        ),
    ] = None,
) -> None:
    """Write a model as a folder to deploy: Hugging Face, sentence-transformers, ONNX or ONNX int8."""
    from kdforge.export import check_format, default_format, export
    from kdforge.models import load_model

    def action() -> str:
        if fmt is not None:
            check_format(fmt)
        loaded = load_model(model)
        chosen = fmt or default_format(loaded)
        export(loaded, out_dir, chosen)
        return chosen

    chosen = _guard(action)
    out.print(f"{model} exported to {out_dir} ({chosen})", highlight=False)


@app.command()
def bench(
    models: Annotated[list[str], typer.Argument(help="Model folders (PyTorch or exported ONNX), aliases or hub ids.")],
    task: Annotated[
        str | None,
        typer.Option(help="sts | classification | token_classification | intent_slots: also measure quality."),
    ] = None,
    data: Annotated[str | None, typer.Option(help="Labelled data file or folder for quality and timing.")] = None,
    split: Annotated[str, typer.Option(help="Split to read when --data is a folder.")] = "test",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for bench.json and bench.png.")] = Path("runs/bench"),
    torch_int8: Annotated[
        bool, typer.Option("--torch-int8", help="Also measure each PyTorch model with int8 dynamic quantization.")
    ] = False,
    sentences: Annotated[int, typer.Option(help="Sentences per throughput round.", min=1)] = 1024,
    latency_sentences: Annotated[int, typer.Option(help="Batch-1 sentences per latency round.", min=1)] = 100,
    batch_size: Annotated[int, typer.Option(help="Batch size of the throughput rounds.", min=1)] = 64,
    rounds: Annotated[int, typer.Option(help="Alternating timing rounds.", min=1)] = 3,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per model (default: torch's default here).", min=1)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Latency, throughput, size, memory (and quality) of models, side by side on this CPU."""
    from kdforge.evaluate.bench import bench as run_bench
    from kdforge.evaluate.bench import bench_table, save_bench

    def action() -> tuple[dict, dict]:
        source = _data_source(data, split) if data is not None else None
        result = run_bench(
            models, task, source, split, torch_int8, sentences, latency_sentences, batch_size, rounds, threads
        )
        return result, save_bench(result, out_dir)

    result, files = _guard(action)
    if as_json:
        print(json.dumps({**result, "files": {k: str(v) for k, v in files.items()}}))
        return
    out.print(bench_table(result))
    if "plot" not in files:
        out.print("no plot: quality needs --task and --data", highlight=False)
    out.print(f"written: {', '.join(str(f) for f in files.values())}", highlight=False)


@app.command()
def methods(
    markdown: bool = typer.Option(False, "--markdown", help="print a Markdown table (as in docs/methods.md)"),
) -> None:
    """List the distillation methods, what they need, and their papers."""
    from kdforge.methods import METHODS

    rows = []
    for name, cls in METHODS:
        method = cls()
        needs = sorted(method.student_needs())
        if cls.multi_teacher:
            needs.append("several teachers")
        if not method.needs_teacher:
            needs.append("no teacher")
        if method.needs_labels:
            needs.append("labels")
        rows.append((name, cls.summary, ", ".join(needs), cls.paper))
    if markdown:
        print("| name | what it does | needs | paper |\n|---|---|---|---|")
        for name, summary, needs, paper in rows:
            print(f"| `{name}` | {summary} | {needs} | {paper} |")
        return
    table = Table(title=f"kdforge methods ({len(rows)})")
    table.add_column("name", no_wrap=True)
    table.add_column("what it does", ratio=3)
    table.add_column("needs", ratio=1)
    table.add_column("paper", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out.print(table)


store_app = typer.Typer(help="Knowledge stores: teacher outputs computed once, reused by many students.")
app.add_typer(store_app, name="store")


@store_app.command("build")
def store_build(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe with one or more teachers in mode: cached.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run folder whose finished stages provide stage:NAME teachers.")
    ] = None,
) -> None:
    """Run each cached teacher once over its stage's training data and write (or finish) its store."""
    from kdforge.engine.pipeline import build_stores
    from kdforge.recipe import load_recipe

    folders = _guard(lambda: build_stores(load_recipe(recipe), str(out_dir) if out_dir else None))
    for folder in folders:
        out.print(f"store ready: {folder}", highlight=False)


@store_app.command("info")
def store_info(
    folder: Annotated[Path, typer.Argument(help="Store folder (it holds manifest.json).")],
    verify: Annotated[bool, typer.Option(help="Check every shard's SHA-256.")] = True,
) -> None:
    """What a store holds, for which teacher and data, and whether its shards are intact (a sample store
    of a knowledge stage: its samples, labels and whether a student's index is there)."""
    from kdforge.store import KnowledgeStore
    from kdforge.store.samples import is_sample_store, open_samples

    if is_sample_store(folder):
        samples = _guard(lambda: open_samples(folder))
        counts = samples.samples.to_pandas()["label"].value_counts()
        indexed = (folder / "index.faiss").is_file()
        out.print(
            f"{folder}: sample store ({samples.meta.get('source')} source, teacher {samples.meta.get('teacher')}), "
            f"{len(samples):,} samples, {samples.size_bytes() / 1e6:,.1f} MB\n  labels: "
            + ", ".join(f"{name} {counts.get(name, 0):,}" for name in samples.labels)
            + f"\n  {'keys and FAISS index of a trained student' if indexed else 'no index yet (a student adds it)'}",
            highlight=False,
        )
        return
    store = _guard(lambda: KnowledgeStore(folder, verify=verify))
    m = store.manifest
    views = m.identity.views
    out.print(
        f"{folder}: teacher {m.teacher_name}, {m.rows:,} rows, {len(m.shards)} shards, {m.bytes / 1e6:,.1f} MB, "
        f"built in {m.build_seconds:.0f}s\n  views: {', '.join(views.names)}; hidden layers "
        f"{list(views.hidden_layers)}; attention blocks {list(views.attention_layers)}; logits top-k {views.top_k}; "
        f"precision {views.precision}\n  shards {'verified' if verify else 'not verified'}",
        highlight=False,
    )


def _to_yaml(recipe) -> str:
    import yaml

    data = recipe.model_dump(mode="json", exclude_defaults=True)
    for stage in data.get("stages", []):
        stage.setdefault("task", {"name": recipe.stages[0].task.name})
    return yaml.safe_dump(data, sort_keys=False)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
