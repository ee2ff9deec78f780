"""``kdforge bench``: what each model costs to deploy on this CPU, measured side by side.

For every model: parameters, the size of its weights on disk, batch-1 latency (p50, p95),
batch-64 throughput, peak memory and, given a labelled dataset, its quality. Models may be
PyTorch folders, aliases, hub ids or exported ONNX folders (fp32 or int8); ``torch_int8`` adds
each PyTorch model once more with its linear layers dynamically quantized
(``kdforge.models.placement``, the path int8 teachers take).

Each model lives in its own fresh process. Its memory figure is then its own: the growth of the
process's peak resident set from just before the model is loaded (torch, transformers,
sentence-transformers and onnxruntime already imported) to the end of the timing, i.e. weights,
runtime buffers and the activations of batch-64 inference (read from ``/proc``: Linux only).
The parent process drives the timing so that exactly one model runs at a time, and in
alternating rounds, as ``kdforge.evaluate.speed`` does in one process: a noisy neighbour or
frequency scaling then affects all models alike.
Throughput keeps each model's best round (the least disturbed); latency percentiles pool the
single-sentence timings of all rounds. Both include tokenization, as a caller would see it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from kdforge.errors import KdforgeError
from kdforge.recipe.schema import DataSource, TaskSpec

#: Tasks whose models bench times as they are scored: one sentence (pair) in, one embedding or logits row
#: out; or, for taggers and joint intent + slot models, a sentence's words in and their tags (and intent) out.
QUALITY_TASKS = ("sts", "classification", "token_classification", "intent_slots")
#: What the memory column means, for the table and the JSON.
MEMORY_MEANING = (
    "peak resident memory added by loading the model and running it (batch 1 and batch 64), "
    "in a fresh process that had already imported torch, transformers and onnxruntime"
)


@dataclass(frozen=True)
class Candidate:
    """One row of the benchmark: the model to load, and whether to quantize it as PyTorch int8."""

    label: str
    source: str
    torch_int8: bool = False


@dataclass(frozen=True)
class Workload:
    """What every model runs: the same sentences, batch size, thread count and quality data."""

    texts: list[str]
    pairs: list[str] | None
    latency_sentences: int
    batch_size: int
    threads: int
    task: str | None
    data: DataSource | None
    split: str


# ----- the worker process -------------------------------------------------------------------
_PROC = Path("/proc/self")


def _memory_field(name: str) -> int:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in bytes."""
    line = next(line for line in (_PROC / "status").read_text().splitlines() if line.startswith(name + ":"))
    return int(line.split()[1]) * 1024


def _reset_peak() -> int | None:
    """Resident memory now, with the kernel's peak mark (``VmHWM``) reset to it; ``None`` off Linux.

    ``getrusage``'s ``ru_maxrss`` cannot serve: Linux carries it across fork and exec, so a fresh
    process would start with its parent's peak (a benchmark script that exported the models first).
    """
    try:
        (_PROC / "clear_refs").write_text("5")
        return _memory_field("VmRSS")
    except OSError:
        return None


def _preload() -> None:
    """Import what any model's loading imports, so that the memory baseline excludes libraries."""
    import onnxruntime  # noqa: F401
    import sentence_transformers  # noqa: F401
    import transformers  # noqa: F401

    import kdforge.engine.pipeline  # noqa: F401
    import kdforge.models.placement  # noqa: F401


def _load(candidate: Candidate, work: Workload):
    from kdforge.models import load_model
    from kdforge.models.placement import place_teacher
    from kdforge.models.text_model import TextModel
    from kdforge.recipe.schema import TeacherSpec
    from kdforge.tasks import TASKS

    kind = TASKS.get(work.task).kind if work.task else None
    model = load_model(candidate.source, kind=kind)
    if candidate.torch_int8:
        if not isinstance(model, TextModel):
            raise KdforgeError(f"{candidate.source}: PyTorch int8 needs a PyTorch model, not an exported ONNX graph")
        place_teacher(model, TeacherSpec(model=candidate.source, dtype="int8", device="cpu"), torch.device("cpu"))
    return model


def _describe(model, candidate: Candidate) -> dict:
    from kdforge.evaluate.size import model_size
    from kdforge.models.onnx_model import OnnxTextModel

    if isinstance(model, OnnxTextModel):
        fmt = "onnx int8" if model.format == "onnx-int8" else "onnx fp32"
        disk_mb = model.disk_bytes() / 2**20
    else:
        fmt = "pytorch int8" if candidate.torch_int8 else "pytorch fp32"
        disk_mb = model_size(model)["disk_mb"]
    return {"format": fmt, "kind": model.kind, "parameters": model.num_parameters(), "disk_mb": disk_mb}


def _infer(model, texts: list[str], pairs: list[str] | None, batch_size: int) -> float:
    start = time.perf_counter()
    if model.kind == "classifier":
        model.predict(texts, pairs, batch_size=batch_size)
    elif model.kind in ("token_classifier", "joint"):  # evaluation's own path: words in, each word's tag out
        from kdforge.tasks.intent_slots import predict_joint
        from kdforge.tasks.token_classification import predict_tags

        words = [t.split() for t in texts]
        tags = [str(model.config.id2label[i]) for i in range(model.num_labels)]  # intents, for a joint model
        if model.kind == "joint":
            predict_joint(model, words, tags, list(model.config.slot_labels), batch_size)
        else:
            predict_tags(model, words, tags, batch_size)
    else:
        model.encode(texts, batch_size=batch_size)
    return time.perf_counter() - start


def _serve(conn: Connection, candidate: Candidate, work: Workload) -> None:
    """The child process: load one model, then answer the parent's commands one at a time."""
    torch.set_num_threads(work.threads)
    try:
        _preload()
        baseline = _reset_peak()
        model = _load(candidate, work)
        conn.send(("ok", None))
        texts, pairs, n = work.texts, work.pairs, work.latency_sentences

        def single(i: int) -> float:
            return _infer(model, texts[i : i + 1], pairs[i : i + 1] if pairs else None, 1)

        def memory() -> float | None:
            return (_memory_field("VmHWM") - baseline) / 2**20 if baseline is not None else None

        def quality() -> dict[str, float]:
            from kdforge.engine.pipeline import score_model
            from kdforge.tasks import TASKS

            assert work.task is not None and work.data is not None
            task = TASKS.get(work.task)(TaskSpec(name=work.task))
            return score_model(model, task, work.data, work.split)

        def warmup() -> None:  # allocator, kernels, lazy initialisation
            two = 2 * work.batch_size
            _infer(model, texts[:two], pairs[:two] if pairs else None, work.batch_size)
            for i in range(min(8, n)):
                single(i)

        commands = {
            "warmup": warmup,
            "latency": lambda: [single(i) for i in range(n)],
            "throughput": lambda: _infer(model, texts, pairs, work.batch_size),
            "memory": memory,
            # after "memory": measuring the size of PyTorch weights writes them out, which takes memory
            "describe": lambda: _describe(model, candidate),
            "quality": quality,
        }
        while (command := conn.recv()) != "stop":
            conn.send(("ok", commands[command]()))
    except KdforgeError as error:
        conn.send(("error", str(error)))
    except Exception:  # a bug: the parent reports it with the child's traceback
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


# ----- the parent ---------------------------------------------------------------------------
class _Worker:
    """The parent's end of one model's process."""

    def __init__(self, context, candidate: Candidate, work: Workload) -> None:
        self.candidate = candidate
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, candidate, work), daemon=True)
        self.process.start()
        child.close()  # the child's death then reads as EOF here

    def receive(self):
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.process.join(5)
            raise KdforgeError(
                f"{self.candidate.label}: its benchmark process died (exit code {self.process.exitcode}; "
                "out of memory?)"
            ) from None
        if status == "error":
            raise KdforgeError(value)
        if status == "crash":
            raise RuntimeError(f"{value.strip().splitlines()[-1]} (benchmarking {self.candidate.label})\n{value}")
        return value

    def call(self, command: str):
        self.conn.send(command)
        return self.receive()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):  # the child may have closed its end already
                self.conn.send("stop")
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()


def candidates(sources: Sequence[str], torch_int8: bool = False) -> list[Candidate]:
    """One row per model, plus a PyTorch int8 row per PyTorch model when asked (missing folders refused here)."""
    from kdforge.models.loading import check_source
    from kdforge.models.onnx_model import is_onnx_folder

    pytorch = [source for source in sources if not is_onnx_folder(Path(check_source(source)))]
    return [Candidate(source, source) for source in sources] + [Candidate(s, s, True) for s in pytorch if torch_int8]


def workload_texts(
    task: str | None, data: DataSource | None, split: str, count: int
) -> tuple[list[str], list[str] | None]:
    """The sentences every model is timed on: the dataset's (both sides of STS pairs), else kdforge's own."""
    if data is None or task is None:
        from kdforge.quickstart import packaged_sentences

        return packaged_sentences()[:count], None
    from kdforge.tasks import TASKS
    from kdforge.tasks.data import texts_and_pairs

    ds = TASKS.get(task)(TaskSpec(name=task)).load_eval(data, split)
    texts, pairs = texts_and_pairs(ds)
    if TASKS.get(task).kind == "embedding" or pairs is None:
        return (texts + (pairs or []))[:count], None
    return texts[:count], pairs[:count]


def bench(
    sources: Sequence[str],
    task: str | None = None,
    data: DataSource | None = None,
    split: str = "test",
    torch_int8: bool = False,
    sentences: int = 1024,
    latency_sentences: int = 100,
    batch_size: int = 64,
    rounds: int = 3,
    threads: int | None = None,
) -> dict:
    """Measure every model in ``sources``; see the module docstring for what each figure means.

    ``threads``: intra-op threads of every model (PyTorch and onnxruntime alike; default: torch's
    default here). The models run in child processes started by ``multiprocessing`` (spawn), so a
    script that calls this needs the ``if __name__ == "__main__":`` guard.
    """
    from kdforge.tasks import TASKS

    if (task is None) != (data is None):
        raise KdforgeError("quality needs both a task and data (--task and --data); give both or neither")
    if not sources:
        raise KdforgeError("name at least one model to benchmark")
    if task is not None and task not in QUALITY_TASKS:
        raise KdforgeError(f"--task: bench measures quality for {', '.join(QUALITY_TASKS)}, not {task!r}")
    metric = TASKS.get(task)(TaskSpec(name=task)).primary_metric if task else None
    texts, pairs = workload_texts(task, data, split, sentences)
    threads = threads or torch.get_num_threads()
    work = Workload(texts, pairs, min(latency_sentences, len(texts)), batch_size, threads, task, data, split)
    rows = candidates(sources, torch_int8)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing shared, nothing inherited
    workers = [_Worker(context, row, work) for row in rows]
    try:
        for worker in workers:
            worker.receive()  # loaded
        for worker in workers:
            worker.call("warmup")
        latencies: list[list[float]] = [[] for _ in workers]
        best = [float("inf")] * len(workers)
        for _ in range(rounds):
            for i, worker in enumerate(workers):
                latencies[i] += worker.call("latency")
            for i, worker in enumerate(workers):
                best[i] = min(best[i], worker.call("throughput"))
        memory = [worker.call("memory") for worker in workers]
        described = [worker.call("describe") for worker in workers]
        quality = [worker.call("quality") if task else None for worker in workers]
    finally:
        for worker in workers:
            worker.close()
    models = []
    for i, row in enumerate(rows):
        p50, p95 = np.percentile(latencies[i], [50, 95]) * 1000
        models.append(
            {
                "model": row.label,
                **described[i],
                "latency_ms_p50": float(p50),
                "latency_ms_p95": float(p95),
                "sentences_per_second": len(texts) / best[i],
                "peak_memory_mb": memory[i],
                "metrics": quality[i],
            }
        )
    settings = {
        "threads": work.threads,
        "batch_size": batch_size,
        "sentences": len(texts),
        "latency_sentences": work.latency_sentences,
        "rounds": rounds,
        "task": task,
        "data": data.describe() if data else None,
        "split": split if data else None,
        "metric": metric,
        "memory": MEMORY_MEANING,
    }
    return {"settings": settings, "models": models}


# ----- output -------------------------------------------------------------------------------
def bench_table(result: dict) -> Table:
    settings = result["settings"]
    table = Table(
        title=f"kdforge bench: {settings['threads']} CPU threads, {settings['sentences']:,} sentences",
        caption=(
            f"latency: batch 1, {settings['latency_sentences']} sentences x {settings['rounds']} rounds; "
            f"throughput: batch {settings['batch_size']}, best of {settings['rounds']} alternating rounds; "
            f"memory: {settings['memory']}"
        ),
    )
    metric = settings["metric"]
    columns = ["model", "format", "params", "disk MB", "p50 ms", "p95 ms", "sent/s", "mem MB"]
    if metric:
        columns.append(f"{metric} ({settings['split']})")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < 2 else "right", overflow="fold")
    for row in result["models"]:
        cells = [
            row["model"],
            row["format"],
            f"{row['parameters']:,}",
            f"{row['disk_mb']:.1f}",
            f"{row['latency_ms_p50']:.2f}",
            f"{row['latency_ms_p95']:.2f}",
            f"{row['sentences_per_second']:,.0f}",
            f"{row['peak_memory_mb']:.0f}" if row["peak_memory_mb"] is not None else "-",
        ]
        if metric:
            cells.append(f"{row['metrics'][metric]:.2f}")
        table.add_row(*cells)
    return table


def plot_bench(result: dict, path: Path) -> Path | None:
    """Quality against batch-64 throughput (log scale), one labelled point per model; ``None`` without quality."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, Agg renders the PNG

    settings = result["settings"]
    metric = settings["metric"]
    if not metric:
        return None
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for row in result["models"]:
        x, y = row["sentences_per_second"], row["metrics"][metric]
        axes.scatter([x], [y], s=40)
        axes.annotate(
            f"{_short(row['model'])}\n{row['format']}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8
        )
    axes.set_xscale("log")
    axes.margins(x=0.2, y=0.15)
    axes.set_xlabel(
        f"sentences/s at batch {settings['batch_size']}, {settings['threads']} thread(s) per model (log scale)"
    )
    axes.set_ylabel(f"{metric} on {settings['data']} ({settings['split']})")
    axes.set_title("quality vs throughput", pad=12)
    axes.grid(True, which="both", alpha=0.3)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _short(label: str) -> str:
    """A model path as its last two parts (the plot's labels stay readable)."""
    parts = Path(label).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 else label


def save_bench(result: dict, out: Path) -> dict[str, Path]:
    """``bench.json`` and, when quality was measured, ``bench.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "bench.json"}
    files["json"].write_text(json.dumps(result, indent=2) + "\n")
    plot = plot_bench(result, out / "bench.png")
    if plot is not None:
        files["plot"] = plot
    return files
