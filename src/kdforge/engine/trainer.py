"""The training loop, on Hugging Face Accelerate.

The same code runs on one CPU, several GPUs (``accelerate launch``: DDP, FSDP, DeepSpeed)
or with bf16; Accelerate does the placement, gradient accumulation and synchronisation.
A killed run resumes from its last checkpoint and ends with the same weights as an
uninterrupted one (seeded order, restored RNG, optimizer and scheduler state).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kdforge.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from kdforge.engine.collate import Collator
from kdforge.engine.processes import cpu_group, process_state
from kdforge.engine.sampling import EpochShuffleSampler
from kdforge.engine.teacher_source import TeacherSource
from kdforge.errors import RecipeError, TrainingError
from kdforge.methods.base import Batch, Method
from kdforge.models.placement import memory_line, place_teacher
from kdforge.models.text_model import TextModel
from kdforge.models.views import Views
from kdforge.models.vocabulary import vocabulary_map
from kdforge.recipe.schema import TeacherSpec, TrainingSpec
from kdforge.schedules import Schedulable, value_at
from kdforge.store.plan import cached_teacher
from kdforge.store.reader import StoredTeacher
from kdforge.tasks.augment import Augmenter, WordNeighbours

LENGTH_GROUP_BATCHES = 50  # batches per length-sorted chunk


class Objective(nn.Module):
    """The student and the weighted methods: the one module Accelerate wraps.

    Wrapping both means DDP also synchronises the methods' learned projections.
    """

    def __init__(self, student: TextModel, methods: list[Method], weights: list[Schedulable]) -> None:
        super().__init__()
        self.student = student
        self.methods = nn.ModuleList(methods)
        self.weights = weights
        self.student_needs = frozenset().union(*(m.student_needs() for m in methods))

    def forward(self, batch: Batch, teachers: list[Views | None]) -> tuple[Tensor, dict[str, Tensor]]:
        views = self.student(batch.student_inputs, self.student_needs)
        if batch.candidate_inputs is not None:  # ranking: passages are encoded apart from their queries
            views = replace(views, candidates=self.student(batch.candidate_inputs, self.student_needs))
        second: dict[str, Views] = {}  # one extra student pass per kind of second view
        parts = {}
        for m in self.methods:
            teacher = teachers if m.multi_teacher else (teachers[m.teacher_index] if teachers else None)
            student_views = views
            if m.second_view is not None:
                if m.second_view not in second:
                    inputs = m.augment(batch.student_inputs, batch, self.student.tokenizer)
                    second[m.second_view] = self.student(inputs, self.student_needs)
                student_views = replace(views, second=second[m.second_view])
            parts[m.registered_name] = m(teacher, student_views, batch)
        weights = [value_at(w, batch.progress) for w in self.weights]
        total = sum(w * p for w, p in zip(weights, parts.values(), strict=True))
        if not torch.is_tensor(total) or not total.requires_grad:
            # every method is idle at this step (a scheduled phase): keep the graph so backward runs
            total = total + 0.0 * _anchor(views)
        return total, parts


def _anchor(views: Views) -> Tensor:
    for value in (views.logits, views.embedding, views.hidden_states[-1] if views.hidden_states else None):
        if value is not None:
            return value.sum()
    raise RuntimeError("the student produced no differentiable output")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    seconds_per_step: float
    final_loss: float
    resumed_from: int | None
    examples: int
    teacher_cache_hits: int = 0
    teacher_seconds: float = 0.0  # live teacher forwards, part of ``seconds``
    losses: list[float] = field(default_factory=list)
    stores: list[str] = field(default_factory=list)  # knowledge stores read instead of teachers


def _accelerator(training: TrainingSpec, folder: Path, seed: int):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration, set_seed

    if not process_state().use_distributed:
        AcceleratorState._reset_state(reset_partial_state=True)  # a new stage may change precision
    accelerator = Accelerator(
        cpu=cpu_group(),
        gradient_accumulation_steps=training.gradient_accumulation,
        mixed_precision="bf16" if training.bf16 else "no",
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(folder), logging_dir=str(folder / "logs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(seed)
    return accelerator


def _optimizer(objective: Objective, training: TrainingSpec) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in objective.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.dim() < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": training.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=training.lr)


def _augmenter(training: TrainingSpec, student: TextModel, teachers: list[TextModel], task, seed: int) -> Augmenter:
    from kdforge.tasks.base import Task

    if task is not None and type(task).collate is not Task.collate:
        raise RecipeError(
            f"training.augment: the {task.spec.name} task lays out its own batches and cannot be augmented"
        )
    source = teachers[0] if teachers else student  # replacement words the teacher knows
    assert training.augment is not None
    return Augmenter(training.augment, WordNeighbours(source, training.augment.candidates), seed)


def train(
    student: TextModel,
    teachers: list[TextModel],
    methods: list[Method],
    weights: list[Schedulable],
    dataset: datasets.Dataset,
    training: TrainingSpec,
    folder: Path,
    seed: int,
    fingerprint: str,
    desc: str = "train",
    task=None,
    teacher_specs: list[TeacherSpec] | None = None,
    log: Callable[[str], None] | None = None,
    store_only: bool = False,
) -> TrainResult:
    """Train ``student`` in place on ``dataset`` with the weighted ``methods``.

    ``teacher_specs`` (one per teacher) say where and in which precision each teacher runs
    (without them: fp32 on the training device); ``log`` receives the line saying what the
    teachers' and the student's weights take. ``store_only`` stops once the knowledge stores of
    cached teachers exist (``kdforge store build``).
    """
    from transformers import get_scheduler

    accelerator = _accelerator(training, folder, seed)
    objective = Objective(student, methods, weights)
    for method in methods:
        method.bind(student, teachers)
    student.prepare_for(objective.student_needs)
    collator = Collator(student, teachers, training.max_length, task)
    if training.augment is not None:
        collator.augmenter = _augmenter(training, student, teachers, task, seed)
    lengths = [len(t) for t in dataset["text"]]
    # Chunks of the global batch (all processes) keep the order independent of the process count.
    global_batch = training.batch_size * accelerator.num_processes
    group = global_batch * LENGTH_GROUP_BATCHES if training.length_grouping else 1
    loader = DataLoader(
        dataset,
        batch_size=training.batch_size,
        sampler=EpochShuffleSampler(lengths, seed, group),
        collate_fn=collator,
        # Its own generator: creating an iterator must not draw from the global RNG, or a
        # resumed run (which creates one more iterator) would get different dropout masks.
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = _optimizer(objective, training)
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    accumulation = training.gradient_accumulation
    steps_per_epoch = max(1, math.ceil(len(loader) / accumulation))
    total_steps = training.max_steps or max(1, math.ceil(training.epochs * steps_per_epoch))
    scheduler = get_scheduler(
        "constant_with_warmup" if training.scheduler == "constant" else training.scheduler,
        optimizer=optimizer,
        num_warmup_steps=int(training.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )  # not prepared: Accelerate would step it once per process; it steps once per optimizer step here

    sources: list[TeacherSource | StoredTeacher | None] = []
    needs_of = [
        frozenset().union(*(m.teacher_needs() for m in methods if m.multi_teacher or m.teacher_index == position))
        for position in range(len(teachers))
    ]
    for position, (teacher, needs) in enumerate(zip(teachers, needs_of, strict=True)):
        if not needs:
            sources.append(None)  # no method reads this teacher
            continue
        teacher.prepare_for(needs)
        spec = teacher_specs[position] if teacher_specs else None
        place_teacher(teacher, spec, accelerator.device)
        vocabulary = vocabulary_map(teacher.tokenizer, student.tokenizer)  # a compressed student's
        if spec is not None and spec.mode == "cached":  # a knowledge store instead of teacher forwards
            stored = cached_teacher(
                spec, position, teachers, needs_of, accelerator.unwrap_model(objective), collator, dataset, task,
                training, log or (lambda _: None), vocabulary,
            )  # fmt: skip
            sources.append(stored)
            continue
        # augmented rows differ from epoch to epoch: nothing the teacher says about them can be reused
        cache = training.teacher_cache == "auto" and training.augment is None
        sources.append(TeacherSource(teacher, needs, cache=cache, position=position, vocabulary=vocabulary))
    if log is not None and accelerator.is_main_process:
        log(memory_line(teachers, student))
    stores = [str(s.store.folder) for s in sources if isinstance(s, StoredTeacher)]
    if store_only:
        return TrainResult(0, 0.0, 0.0, float("nan"), None, len(dataset), stores=stores)

    inner = accelerator.unwrap_model(objective)
    checkpoints = folder / "checkpoints"
    global_step, losses, resumed_from = 0, [], None
    found = latest_checkpoint(checkpoints, fingerprint)
    if found is not None:
        model_state, optimizer_state, scheduler_state = load_checkpoint(found)
        inner.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
        global_step = resumed_from = found.step
        losses = list(found.state.get("losses", []))

    def checkpoint() -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_checkpoint(
                checkpoints,
                global_step,
                accelerator.get_state_dict(objective),
                optimizer.state_dict(),
                scheduler.state_dict(),
                {"global_step": global_step, "fingerprint": fingerprint, "losses": losses},
                training.keep_checkpoints,
            )

    accelerator.init_trackers(desc.replace("/", "_"))
    objective.train()
    bar = tqdm(
        total=total_steps,
        initial=global_step,
        desc=desc,
        unit="step",
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
    )
    started = time.perf_counter()
    steps_this_session = 0
    running = None
    epoch = global_step // steps_per_epoch
    while global_step < total_steps:
        loader.set_epoch(epoch)
        collator.epoch = epoch
        skip = (global_step - epoch * steps_per_epoch) * accumulation
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            batch.step, batch.total_steps, batch.epoch, batch.seed = global_step, total_steps, epoch, seed
            with accelerator.accumulate(objective):
                with accelerator.autocast():
                    teacher_views = [source(batch) if source is not None else None for source in sources]
                    loss, parts = objective(batch, teacher_views)
                value = loss.item()
                if not math.isfinite(value):
                    detail = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
                    raise TrainingError(
                        f"{desc}: loss is {value} at step {global_step + 1} ({detail}); the last checkpoint is "
                        f"kept in {checkpoints}; lower training.lr or check the data"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and training.max_grad_norm:
                    accelerator.clip_grad_norm_(objective.parameters(), training.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            steps_this_session += 1
            running = value if running is None else 0.9 * running + 0.1 * value
            losses.append(round(value, 6))
            bar.update(1)
            if global_step % training.log_every == 0 or global_step == total_steps:
                bar.set_postfix(loss=f"{running:.4g}", refresh=False)
                logs = {"loss": value, "lr": scheduler.get_last_lr()[0]}
                logs.update({f"loss/{k}": v.item() for k, v in parts.items()})
                accelerator.log(logs, step=global_step)
            if global_step % training.save_every == 0 or global_step == total_steps:
                checkpoint()
            if global_step >= total_steps:
                break
        epoch += 1
    seconds = time.perf_counter() - started
    bar.close()
    for tracker in accelerator.trackers:  # not end_training(): later stages still need the process group
        tracker.finish()
    objective.eval()
    return TrainResult(
        steps=global_step,
        seconds=seconds,
        seconds_per_step=seconds / max(1, steps_this_session),
        final_loss=running if running is not None else (losses[-1] if losses else float("nan")),
        resumed_from=resumed_from,
        examples=len(dataset),
        teacher_cache_hits=sum(s.hits for s in sources if s is not None),
        teacher_seconds=sum(s.seconds for s in sources if s is not None),
        losses=losses,
        stores=stores,
    )
