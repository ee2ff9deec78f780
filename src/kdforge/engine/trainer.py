"""The training loop, on Hugging Face Accelerate.

The same code runs on one CPU, several GPUs (``accelerate launch``: DDP, FSDP, DeepSpeed)
or with bf16; Accelerate does the placement, gradient accumulation and synchronisation.
A killed run resumes from its last checkpoint and ends with the same weights as an
uninterrupted one (seeded order, restored RNG, optimizer and scheduler state).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
import torch
from accelerate.utils import DistributedType
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kdforge.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from kdforge.engine.collate import Collator
from kdforge.engine.processes import cpu_group, process_state
from kdforge.engine.sampling import EpochShuffleSampler
from kdforge.engine.teacher_source import TeacherSource
from kdforge.errors import CheckpointError, RecipeError, TrainingError
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

    Wrapping both means DDP also synchronises the methods' learned projections. Under FSDP or
    DeepSpeed ZeRO-3 the live teachers are frozen submodules too, so the one wrapped module
    shards them with the student, and their forward passes run inside this one, on every process.
    """

    def __init__(
        self,
        student: TextModel,
        methods: list[Method],
        weights: list[Schedulable],
        teachers: list[TextModel] | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.methods = nn.ModuleList(methods)
        self.teachers = nn.ModuleList(teachers or [])  # sharded runs only; never trained
        self.weights = weights
        self.student_needs = frozenset().union(*(m.student_needs() for m in methods))
        # Each method's loss is logged under its name; a method listed twice (kd on two heads) under
        # ``name[i]``, its place in the recipe's list, so neither term is dropped.
        names = [m.registered_name for m in methods]
        self.part_names = [n if names.count(n) == 1 else f"{n}[{i}]" for i, n in enumerate(names)]

    def train(self, mode: bool = True) -> Objective:
        super().train(mode)
        self.teachers.eval()  # a teacher never trains: no dropout in what it says
        return self

    def forward(self, batch: Batch, teachers: list) -> tuple[Tensor, dict[str, Tensor]]:
        """``teachers``: each teacher's views, or the source that gives them for ``batch``.

        Sources are called here, inside the wrapped module, where a sharded teacher's layers are
        gathered like the student's.
        """
        teachers = [t(batch) if callable(t) else t for t in teachers]
        views = self.student(batch.student_inputs, self.student_needs)
        if batch.candidate_inputs is not None:  # ranking: passages are encoded apart from their queries
            views = replace(views, candidates=self.student(batch.candidate_inputs, self.student_needs))
        second: dict[str, Views] = {}  # one extra student pass per kind of second view
        parts = {}
        for m, name in zip(self.methods, self.part_names, strict=True):
            teacher = teachers if m.multi_teacher else (teachers[m.teacher_index] if teachers else None)
            student_views = views
            if m.second_view is not None:
                if m.second_view not in second:
                    inputs = m.augment(batch.student_inputs, batch, self.student.tokenizer)
                    second[m.second_view] = self.student(inputs, self.student_needs)
                student_views = replace(views, second=second[m.second_view])
            parts[name] = m(teacher, student_views, batch)
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
    sharded: bool = False  # FSDP / ZeRO-3: the teachers were sharded in place and run only with all processes
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
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        from transformers.integrations import unset_hf_deepspeed_config

        # Selecting the ZeRO-3 plugin makes every later from_pretrained build partitioned models,
        # a collective (the main process loading a model alone would wait forever). kdforge loads
        # whole models and lets prepare() partition them.
        unset_hf_deepspeed_config()
        plugin = accelerator.state.deepspeed_plugin
        if plugin.is_auto("gradient_clipping"):  # else Accelerate fills in 1.0, whatever the recipe says
            plugin.deepspeed_config["gradient_clipping"] = training.max_grad_norm or 0.0
    set_seed(seed)
    return accelerator


def _shards(accelerator) -> bool:
    """FSDP or DeepSpeed: parameters are split across the processes, not replicated."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


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

    if task is not None and type(task).collate is not Task.collate and not task.augments_own_batches:
        raise RecipeError(
            f"training.augment: the {task.spec.name} task lays out its own batches and cannot be augmented"
        )
    spec = training.augment
    assert spec is not None
    source = teachers[0] if teachers else student  # replacement words the teacher knows
    neighbours = WordNeighbours(source, spec.candidates) if spec.probability > 0 else None
    return Augmenter(spec, neighbours, seed)


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
    shards = _shards(accelerator)
    # Sharded runs train a copy: the caller's student stays a plain module and gets the gathered
    # weights back at the end (evaluation and export run on the main process alone).
    trained = copy.deepcopy(student) if shards else student
    for method in methods:
        method.bind(trained, teachers)
    needs_of = [
        frozenset().union(*(m.teacher_needs() for m in methods if m.multi_teacher or m.teacher_index == position))
        for position in range(len(teachers))
    ]
    specs = teacher_specs or [None] * len(teachers)
    live = [
        bool(needs) and (spec is None or spec.mode == "online") for needs, spec in zip(needs_of, specs, strict=True)
    ]
    if shards:
        for position, spec in enumerate(specs):
            if (
                live[position]
                and spec is not None
                and (spec.dtype, spec.device, spec.offload) != ("fp32", "auto", False)
            ):
                raise RecipeError(
                    f"teachers[{position}]: under {accelerator.distributed_type.value} the teacher is sharded with "
                    "the student; leave dtype fp32, device auto and offload false (training.bf16 sets the precision)"
                )
    sharded_teachers = [t for t, is_live in zip(teachers, live, strict=True) if is_live] if shards else []
    objective = Objective(trained, methods, weights, sharded_teachers)
    trained.prepare_for(objective.student_needs)
    collator = Collator(trained, teachers, training.max_length, task)
    if training.augment is not None:
        collator.augmenter = _augmenter(training, trained, teachers, task, seed)

    # Teachers are placed and frozen before Accelerate wraps anything: FSDP and DeepSpeed must see a
    # sharded teacher frozen, and put its shards on the devices themselves.
    sources: list[TeacherSource | StoredTeacher | None] = []
    for position, (teacher, needs, spec) in enumerate(zip(teachers, needs_of, specs, strict=True)):
        if not needs:
            sources.append(None)  # no method reads this teacher
            continue
        teacher.prepare_for(needs)
        if shards and live[position]:
            teacher.eval().requires_grad_(False)
        else:
            place_teacher(teacher, spec, accelerator.device)
        vocabulary = vocabulary_map(teacher.tokenizer, trained.tokenizer)  # a compressed student's
        if spec is not None and spec.mode == "cached":  # a knowledge store instead of teacher forwards
            stored = cached_teacher(
                spec, position, teachers, needs_of, objective, collator, dataset, task,
                training, log or (lambda _: None), vocabulary,
            )  # fmt: skip
            sources.append(stored)
            continue
        # Augmented rows differ from epoch to epoch: nothing the teacher says about them can be reused.
        # Sharded, a hit on one process and a miss on another would leave the others waiting in the
        # teacher's all-gather.
        cache = training.teacher_cache == "auto" and training.augment is None and not shards
        sources.append(TeacherSource(teacher, needs, cache=cache, position=position, vocabulary=vocabulary))
    if log is not None and accelerator.is_main_process and not shards:
        log(memory_line(teachers, student))
    stores = [str(s.store.folder) for s in sources if isinstance(s, StoredTeacher)]
    if store_only:
        return TrainResult(0, 0.0, 0.0, float("nan"), None, len(dataset), stores=stores)

    checkpoints = folder / "checkpoints"
    global_step, losses, resumed_from = 0, [], None
    found = latest_checkpoint(checkpoints, fingerprint)
    optimizer_state = scheduler_state = None
    if found is not None:
        model_state, optimizer_state, scheduler_state = load_checkpoint(found)
        # before wrapping: FSDP and DeepSpeed then shard the restored weights
        missing, unexpected = objective.load_state_dict(model_state, strict=False)
        if unexpected or any(not key.startswith("teachers.") for key in missing):
            raise CheckpointError(f"{found.path}: its weights do not fit this student; delete it to start afresh")
        global_step = resumed_from = found.step
        losses = list(found.state.get("losses", []))

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
    if found is not None:
        if not shards:
            optimizer.load_state_dict(optimizer_state)
        elif log is not None and accelerator.is_main_process:  # split across the processes, not in the checkpoint
            log("sharded run: weights and position restored; the optimizer's moments start afresh")
        scheduler.load_state_dict(scheduler_state)

    def checkpoint() -> None:
        accelerator.wait_for_everyone()
        model_state = accelerator.get_state_dict(objective)  # every process: gathering shards is collective
        if accelerator.is_main_process:
            save_checkpoint(
                checkpoints,
                global_step,
                {key: value for key, value in model_state.items() if not key.startswith("teachers.")},
                {"state": {}, "param_groups": []} if shards else optimizer.state_dict(),
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
                    loss, parts = objective(batch, sources)
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
    if shards:  # the trained copy's shards, gathered into the caller's plain student
        full = accelerator.get_state_dict(objective)
        if accelerator.is_main_process:
            student.load_state_dict(
                {k.removeprefix("student."): v for k, v in full.items() if k.startswith("student.")}
            )
    return TrainResult(
        steps=global_step,
        seconds=seconds,
        seconds_per_step=seconds / max(1, steps_this_session),
        final_loss=running if running is not None else (losses[-1] if losses else float("nan")),
        resumed_from=resumed_from,
        examples=len(dataset),
        teacher_cache_hits=sum(s.hits for s in sources if s is not None),
        teacher_seconds=sum(s.seconds for s in sources if s is not None),
        sharded=shards,
        losses=losses,
        stores=stores,
    )
