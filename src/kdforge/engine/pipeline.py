"""A whole run: its stages in order, then the teacher-vs-student evaluation and the export.

Each stage writes its model to ``OUT/stages/NAME/model`` and a ``done.json``; a rerun skips
finished stages and resumes an unfinished one from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
from rich.console import Console

from kdforge.engine.collate import aligned
from kdforge.engine.processes import process_state
from kdforge.engine.trainer import TrainResult, train
from kdforge.errors import DataError, IncompatibleError, KdforgeError, ModelError, StoreError
from kdforge.evaluate.metrics import similarity_fidelity
from kdforge.evaluate.report import print_table
from kdforge.evaluate.size import model_size
from kdforge.evaluate.speed import throughput
from kdforge.export import default_format, export, save_hf
from kdforge.methods import METHODS, Method, ModelShape, Pair
from kdforge.models import build_student, load_model
from kdforge.models.loading import load_trainable
from kdforge.models.onnx_model import OnnxTextModel
from kdforge.models.text_model import TextModel
from kdforge.models.vocabulary import vocabulary_map
from kdforge.recipe.schema import STAGE_PREFIX, DataSource, Recipe, StageSpec
from kdforge.schedules import Schedule
from kdforge.store.samples import SampleStore, is_sample_store, open_samples
from kdforge.tasks import TASKS, Task
from kdforge.tasks.data import texts_and_pairs

console = Console(stderr=True)
SPEED_SENTENCES = 512
AGREEMENT_SENTENCES = 1000


@dataclass
class StageOutcome:
    name: str
    stage: StageSpec
    task: Task
    teacher: TextModel | None
    student: TextModel
    training: TrainResult | None
    skipped: bool


def _recorded_training(done: Path) -> TrainResult | None:
    """The training figures a finished stage recorded, so a rerun still reports them."""
    recorded = json.loads(done.read_text()).get("training")
    try:
        return TrainResult(**{**recorded, "losses": []}) if recorded else None
    except TypeError:  # written by an older kdforge with other fields
        return None


def log(message: str) -> None:
    if process_state().is_main_process:
        console.print(f"[bold cyan]kdforge[/] {message}", highlight=False, soft_wrap=True)


def shape(model: TextModel, student: TextModel | None = None) -> ModelShape:
    """What methods may check about ``model``; a teacher as ``student`` sees it when given.

    A student with a compressed vocabulary sees its teacher's token logits cut to the kept ids.
    """
    output_size = model.num_labels if model.num_labels is not None else getattr(model.config, "vocab_size", None)
    vocabulary = vocabulary_map(model.tokenizer, student.tokenizer) if student is not None else None
    if vocabulary is not None and model.kind in ("masked_lm", "causal_lm"):
        output_size = vocabulary.size
    return ModelShape(
        kind=model.kind,
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_heads=model.num_heads,
        num_labels=model.num_labels,
        embedding_size=model.hidden_size,
        teacher_blocks=tuple(model.teacher_blocks) if model.teacher_blocks else None,
        output_size=output_size,
        num_slots=model.num_slots,
        views=model.views,
    )


def _check_views(method: Method, pair: Pair, where: str) -> None:
    """Refuse a method that reads a view a model cannot give (attention maps of a pQRNN, anything but the
    sentence embedding of a static-embedding model), before any training."""
    teachers = pair.teachers if method.multi_teacher else (pair.teacher,)
    read = [("student", pair.student, method.student_needs())]
    read += [("teacher", t, method.teacher_needs()) for t in teachers if t is not None]
    for role, model, needs in read:
        missing = needs - model.views
        if missing & {"attentions", "qkv"}:
            raise IncompatibleError(
                f"{where}: reads attention maps, but the {role} has no attention (a pQRNN or static-embedding "
                "model); use methods on logits or hidden states"
            )
        if missing:
            raise IncompatibleError(
                f"{where}: reads the {', '.join(sorted(missing))} view(s), which the {role} cannot give "
                f"(it gives: {', '.join(sorted(model.views))})"
            )


def stage_fingerprint(recipe: Recipe, index: int) -> str:
    """Identifies what a stage computes; logging and checkpoint cadence are left out.

    Only values that differ from their defaults count, so a kdforge upgrade that adds a setting
    does not orphan the checkpoints of a run in progress.
    """
    stages = [
        s.model_dump(
            mode="json",
            exclude_defaults=True,
            exclude={"training": {"save_every", "keep_checkpoints", "log_every"}},
        )
        for s in recipe.stages[: index + 1]
    ]
    blob = json.dumps({"seed": recipe.seed, "stages": stages}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _writable(out: Path) -> None:
    """Fail early, in one line, on a folder the run could not write to. The probe file's name is unique, so
    two runs starting in one folder (other stages, other seeds) cannot remove each other's probe."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".kdforge-write-test-"):
            pass
    except OSError as err:
        raise KdforgeError(f"cannot write to the output folder {out}: {err.strerror}") from None


class Pipeline:
    def __init__(self, recipe: Recipe, out: Path) -> None:
        self.recipe = recipe
        self.out = out
        self.outputs: dict[str, Path] = {}

    def _model_source(self, name: str) -> str:
        if name.startswith(STAGE_PREFIX):
            return str(self.outputs[name[len(STAGE_PREFIX) :]])
        return name

    def train_sources(self, stage: StageSpec) -> list[DataSource]:
        """The stage's training sources, ``stage:NAME`` replaced by that knowledge stage's sample store."""
        return [
            s.model_copy(update={"path": self._model_source(s.path)})
            if s.path and s.path.startswith(STAGE_PREFIX)
            else s
            for s in stage.data.train
        ]

    def _load_teachers(self, stage: StageSpec, task: Task) -> list[TextModel]:
        teachers = []
        expected = task.teacher_kind or task.kind
        read = _teacher_is_task_model(stage)
        for spec in stage.teachers:
            teacher = load_trainable(
                self._model_source(spec.model),
                kind="embedding" if expected == "embedding" else None,
                trust_remote_code=spec.trust_remote_code,
            )
            task.check_teacher(teacher, spec.model)
            if expected != "embedding" and teacher.kind != expected and read:
                head = "classification" if expected == "classifier" else expected.replace("_", "-")
                raise ModelError(
                    f"teacher {spec.model!r} has no {head} head; fine-tune it first "
                    "(a 'kind: finetune' stage) and use stage:NAME as the teacher"
                )
            if task.kind == teacher.kind == "classifier" and task.num_labels and teacher.num_labels != task.num_labels:
                raise ModelError(
                    f"teacher {spec.model!r} has {teacher.num_labels} labels but the task has {task.num_labels}"
                )
            log(
                f"teacher [bold]{spec.model}[/]: {teacher.num_layers} layers, "
                f"hidden {teacher.hidden_size}, {teacher.num_parameters() / 1e6:.1f}M parameters"
            )
            teachers.append(teacher)
        return teachers

    def _load_student(
        self, stage: StageSpec, task: Task, teacher: TextModel | None, dataset: datasets.Dataset
    ) -> TextModel:
        spec = stage.student
        if spec.model and not spec.cuts:
            student = load_trainable(
                self._model_source(spec.model),
                kind=task.kind,
                num_labels=task.num_labels,
                trust_remote_code=spec.trust_remote_code,
                num_slots=task.num_slots,
            )
            log(
                f"student [bold]{spec.model}[/]: {student.num_layers} layers, "
                f"{student.num_parameters() / 1e6:.1f}M parameters"
            )
        else:
            source = teacher
            if spec.model:  # cut a given model (an earlier stage's student, a checkpoint), not the teacher
                source = load_trainable(
                    self._model_source(spec.model),
                    kind=task.kind,
                    num_labels=task.num_labels,
                    trust_remote_code=spec.trust_remote_code,
                    num_slots=task.num_slots,
                )
            assert source is not None
            texts = _texts(dataset) if spec.vocabulary is not None or spec.static is not None else None
            student, report = build_student(source, spec, texts, from_teacher=not spec.model)
            log(
                f"student: {student.num_layers} layers, hidden {student.hidden_size}, "
                f"{student.num_parameters() / 1e6:.1f}M parameters; {report.describe()}"
            )
        task.configure(student)
        return student

    def _methods(
        self,
        stage: StageSpec,
        index: int,
        teachers: list[TextModel],
        student: TextModel,
        has_labels: bool,
        sources: list[DataSource],
    ) -> list[Method]:
        shapes = tuple(shape(t, student) for t in teachers)
        student_shape = shape(student)
        tokens_align = [aligned(t, student) for t in teachers]  # compares whole vocabularies: once per teacher
        methods = []
        for j, spec in enumerate(stage.methods):
            cls = METHODS.get(spec.name)
            method = cls(cls.parse_args(spec.args), teacher=spec.teacher)
            where = f"{self._where(index)}methods[{j}] ({spec.name})"
            read = tokens_align if method.multi_teacher else tokens_align[spec.teacher : spec.teacher + 1]
            pair = Pair(
                teacher=shapes[spec.teacher] if teachers else None,
                student=student_shape,
                same_tokenizer=all(read),
                teachers=shapes,
            )
            if method.needs_labels and not has_labels:
                raise IncompatibleError(f"{where}: needs labelled training data, and the data has no labels")
            _check_views(method, pair, where)
            try:
                method.setup(pair)
                if method.uses_sample_store:
                    method.attach_store(_sample_store(sources), student.num_labels)
            except IncompatibleError as err:
                raise IncompatibleError(f"{where}: {err}") from None
            methods.append(method)
        loner = next((why for m in methods if (why := m.alone_because())), None) if len(methods) > 1 else None
        if loner:
            raise IncompatibleError(f"{self._where(index)}methods: {loner}")
        return methods

    def _where(self, index: int) -> str:
        return "" if self.recipe.is_flat else f"stages[{index}]."

    def finished(self, index: int) -> bool:
        """Whether stage ``index`` already ran to the end with this recipe (its model is reusable)."""
        done = self.out / "stages" / self.recipe.stages[index].name / "done.json"
        return done.is_file() and json.loads(done.read_text()).get("fingerprint") == stage_fingerprint(
            self.recipe, index
        )

    def _train(
        self, index: int, task: Task, teachers: list[TextModel], store_only: bool = False
    ) -> tuple[TextModel, TrainResult]:
        """Build stage ``index``'s student and methods and train it (or only build its stores)."""
        stage = self.recipe.stages[index]
        sources = self.train_sources(stage)
        dataset = task.train_dataset(sources)
        student = self._load_student(stage, task, teachers[0] if teachers else None, dataset)
        methods = self._methods(stage, index, teachers, student, task.has_targets(dataset), sources)
        if not store_only:
            names = ", ".join(f"{m.name} x{_weight(m.weight)}" for m in stage.methods)
            log(f"stage [bold]{stage.name}[/] ({stage.kind}): {len(dataset):,} training examples; methods: {names}")
        result = train(
            student,
            teachers,
            methods,
            [m.weight for m in stage.methods],
            dataset,
            stage.training,
            self.out / "stages" / stage.name,
            seed=stage.training.seed if stage.training.seed is not None else self.recipe.seed,
            fingerprint=stage_fingerprint(self.recipe, index),
            desc=stage.name,
            task=task,
            teacher_specs=stage.teachers,
            log=log,
            store_only=store_only,
        )
        return student, result

    def build_stores(self, index: int) -> list[str]:
        """Build (or find) the knowledge stores of stage ``index``'s cached teachers, without training."""
        stage = self.recipe.stages[index]
        for spec in stage.teachers:
            name = spec.model[len(STAGE_PREFIX) :] if spec.model.startswith(STAGE_PREFIX) else None
            if name is not None and name not in self.outputs:
                raise StoreError(
                    f"{self._where(index)}teacher {spec.model} is made by a stage that has not run yet; "
                    "run the recipe with `kdforge run`, which builds the store when it reaches this stage"
                )
        task = TASKS.get(stage.task.name)(stage.task)
        _, result = self._train(index, task, self._load_teachers(stage, task), store_only=True)
        return result.stores

    def run_knowledge(self, index: int) -> dict:
        """A ``kind: knowledge`` stage: the teacher fills a sample store (kdforge/knowledge); returns its summary."""
        from kdforge.knowledge.checkpoints import PromptCheckpoints
        from kdforge.knowledge.stage import build_knowledge

        stage = self.recipe.stages[index]
        folder = self.out / "stages" / stage.name
        store = stage_output(self.out, stage)
        done = folder / "done.json"
        if self.finished(index):
            log(f"stage [bold]{stage.name}[/] already finished; reusing its sample store {store}")
            self.outputs[stage.name] = store
            return json.loads(done.read_text())["knowledge"]
        task = TASKS.get(stage.task.name)(stage.task)
        teachers = self._load_teachers(stage, task)
        dataset = task.train_dataset(self.train_sources(stage))
        assert stage.knowledge is not None and getattr(task, "label_names", None) is not None
        seed = stage.training.seed if stage.training.seed is not None else self.recipe.seed
        log(f"stage [bold]{stage.name}[/] (knowledge, {stage.knowledge.source}): {len(dataset):,} training examples")
        checkpoints = PromptCheckpoints(folder / "checkpoints", stage_fingerprint(self.recipe, index))
        _, summary = build_knowledge(
            stage.knowledge, teachers[0], dataset, task.label_names, store, seed, checkpoints, log
        )
        log(
            f"sample store {store}: {summary['samples']:,} samples, {summary['store_megabytes']:.1f} MB; "
            f"the teacher agrees with the intended label on {summary['teacher_agrees_with_intended_label']:.1f}%"
        )
        if process_state().is_main_process:
            done.write_text(json.dumps({"fingerprint": stage_fingerprint(self.recipe, index), "knowledge": summary}))
        self.outputs[stage.name] = store
        return summary

    def run_stage(self, index: int) -> StageOutcome:
        stage = self.recipe.stages[index]
        folder = self.out / "stages" / stage.name
        model_dir = stage_output(self.out, stage)
        done = folder / "done.json"
        task = TASKS.get(stage.task.name)(stage.task)
        teachers = self._load_teachers(stage, task)
        teacher = _comparable(teachers[0] if teachers else None, task)
        if self.finished(index):
            log(f"stage [bold]{stage.name}[/] already finished; reusing {model_dir}")
            student = load_model(str(model_dir), kind=task.kind)
            if hasattr(task, "adopt_labels"):
                task.adopt_labels(student)
            self.outputs[stage.name] = model_dir
            return StageOutcome(stage.name, stage, task, teacher, student, _recorded_training(done), skipped=True)

        student, result = self._train(index, task, teachers)
        if result.resumed_from:
            log(f"resumed from the checkpoint at step {result.resumed_from}")
        log(
            f"trained {result.steps} steps in {result.seconds:.0f}s ({result.seconds_per_step * 1000:.0f} ms/step), "
            f"final loss {result.final_loss:.4g}"
        )
        state = process_state()
        if student.retrieval is not None:  # a RetriKT student: keys of its final weights
            student.retrieval.refresh(student)
            if student.retrieval.held_out is not None:
                fit = student.retrieval.tune_mix(student)
                log(
                    f"mixing weight fitted on {fit['held_out_rows']:,} held-out store rows: lambda {fit['mix']:.2f} "
                    f"(learned {fit['learned_mix']:.2f}); agreement with the teacher there: own "
                    f"{fit['teacher_agreement']['own']:.1%}, retrieved {fit['teacher_agreement']['retrieved']:.1%}, "
                    f"mixed {fit['teacher_agreement']['mixed']:.1%}"
                )
        if state.is_main_process:  # under accelerate launch, one process writes
            save_hf(student, model_dir)
            training = asdict(result) | {"losses": None}
            done.write_text(json.dumps({"fingerprint": stage_fingerprint(self.recipe, index), "training": training}))
            if result.sharded:  # FSDP / ZeRO-3 split the teachers in place: the evaluation needs whole ones
                teachers = self._load_teachers(stage, task)
                teacher = _comparable(teachers[0] if teachers else None, task)
        state.wait_for_everyone()
        self.outputs[stage.name] = model_dir
        return StageOutcome(stage.name, stage, task, teacher, student, result, skipped=False)

    def evaluate(self, outcome: StageOutcome, measure: bool) -> dict:
        stage, task, teacher, student = outcome.stage, outcome.task, outcome.teacher, outcome.student
        models = {"student": student} | ({"teacher": teacher} if teacher is not None else {})
        metrics: dict[str, dict[str, dict[str, float]]] = {name: {} for name in models}
        texts: list[str] = []
        pairs: list[str] | None = None  # the second texts of a pair task, which agreement must see too
        compared = None  # the first evaluation split, where a task measures agreement its own way
        for split, source in (("eval", stage.data.eval), ("test", stage.data.test)):
            if source is None:
                continue
            ds = task.load_eval(source, "dev" if split == "eval" else "test")
            if not texts:
                texts, pairs = texts_and_pairs(ds)
            compared = ds if compared is None else compared
            if not task.is_labelled(ds):
                continue
            for name, model in models.items():
                metrics[name][split] = task.evaluate(model, ds, source.describe())
        results: dict = {"metrics": metrics, "primary_metric": task.primary_metric}
        if not texts:
            train = task.train_dataset(self.train_sources(stage))
            texts, pairs = texts_and_pairs(train.select(range(min(len(train), AGREEMENT_SENTENCES))))
        if teacher is not None:
            own = task.agreement(teacher, student, compared)
            results["agreement"] = (
                own
                if own is not None
                else agreement(teacher, student, texts[:AGREEMENT_SENTENCES], pairs and pairs[:AGREEMENT_SENTENCES])
            )
        if measure:
            speed = throughput(models, texts[:SPEED_SENTENCES])
            for name, model in models.items():
                results[name] = model_size(model) | {"sentences_per_second": speed[name]["sentences_per_second"]}
            results["speed_setup"] = {k: v for k, v in speed["student"].items() if k != "sentences_per_second"}
            if teacher is not None:
                results["speedup"] = (
                    results["student"]["sentences_per_second"] / results["teacher"]["sentences_per_second"]
                )
                results["compression"] = results["teacher"]["parameters"] / results["student"]["parameters"]
        for split in ("eval", "test"):
            t = metrics.get("teacher", {}).get(split, {}).get(task.primary_metric)
            s = metrics["student"].get(split, {}).get(task.primary_metric)
            if t and s is not None:
                results.setdefault("retained_percent", {})[split] = s / t * 100
        return results


def stage_output(out: Path, stage: StageSpec) -> Path:
    """What ``stage:NAME`` refers to: the stage's model, or a knowledge stage's sample store."""
    return out / "stages" / stage.name / ("store" if stage.kind == "knowledge" else "model")


def _teacher_is_task_model(stage: StageSpec) -> bool:
    """Whether the stage's teacher must be a model of the task's kind. Not when nothing reads it as one: a
    distill stage whose methods all read a sample store (retrikt), a knowledge stage whose causal LM writes
    the samples (source: generative); the evaluation then scores the student alone (``_comparable``)."""
    if stage.kind == "knowledge":
        return stage.knowledge is None or stage.knowledge.source == "encoder"
    if stage.kind == "distill":
        return any(METHODS.get(m.name).needs_teacher for m in stage.methods)
    return True


def _comparable(teacher: TextModel | None, task: Task) -> TextModel | None:
    """The teacher the evaluation scores next to the student: not one of another kind (a causal LM that
    wrote a sample store for a classifier student)."""
    expected = task.teacher_kind or task.kind
    if teacher is None or expected == "embedding" or teacher.kind == expected:
        return teacher
    return None


def _sample_store(sources: list[DataSource]) -> SampleStore:
    """The one sample store a retrieving method trains on (its rows are the training rows, in order)."""
    stores = [s for s in sources if s.path and is_sample_store(s.path)]
    if len(sources) != 1 or not stores:
        raise IncompatibleError(
            "trains on a sample store and retrieves from it: data.train must be exactly one, stage:NAME of a "
            "'kind: knowledge' stage (or such a store's folder)"
        )
    return open_samples(stores[0].path)


def _texts(dataset: datasets.Dataset) -> list[str]:
    """Every text of a training set, both sides of pairs (what a student's vocabulary must cover)."""
    texts = list(dataset["text"])
    if "text_pair" in dataset.column_names:
        texts += [t for t in dataset["text_pair"] if t]
    return texts


def _weight(weight) -> str:
    if isinstance(weight, Schedule):
        return f"{weight.start:g}->{weight.end:g} ({weight.schedule})"
    return f"{weight:g}"


def agreement(
    teacher: TextModel, student: TextModel, texts: list[str], pairs: list[str] | None = None
) -> dict[str, float]:
    """How closely the student reproduces the teacher on unlabeled text."""
    if teacher.kind == "classifier":
        same = (teacher.predict(texts, pairs).argmax(-1) == student.predict(texts, pairs).argmax(-1)).float().mean()
        return {"prediction_agreement": float(same) * 100}
    t, s = teacher.encode(texts), student.encode(texts)
    out = {"similarity_spearman": similarity_fidelity(t, s)}
    if t.shape == s.shape:
        out["mean_cosine"] = float(((t * s).sum(-1) / (t.norm(dim=-1) * s.norm(dim=-1))).mean())
    return out


def run(recipe: Recipe, out: str | Path | None = None, show: bool = True) -> dict:
    """Run every stage of ``recipe``, evaluate, export the student; returns ``results.json``."""
    out = Path(out or recipe.output.dir or Path("runs") / recipe.name)
    _writable(out)
    (out / "recipe.json").write_text(recipe.model_dump_json(indent=2))
    started = time.perf_counter()
    pipeline = Pipeline(recipe, out)
    stages = []
    outcome = None
    main = process_state().is_main_process
    for index, stage in enumerate(recipe.stages):
        if stage.kind == "knowledge":  # writes a sample store, not a model
            summary = pipeline.run_knowledge(index)
            stages.append({"name": stage.name, "kind": stage.kind, **summary})
            continue
        outcome = pipeline.run_stage(index)
        if not main:  # other processes only train; the main one evaluates and exports
            continue
        is_last = index == len(recipe.stages) - 1
        evaluation = pipeline.evaluate(outcome, measure=is_last and recipe.output.benchmark)
        entry = {"name": stage.name, "kind": stage.kind, "skipped": outcome.skipped, **evaluation}
        if outcome.training is not None:
            entry["training"] = asdict(outcome.training) | {"losses": None}
        stages.append(entry)
    if not main:
        return {}
    if outcome is None:  # only knowledge stages: their sample stores are the output
        results = {"recipe": recipe.name, "output": str(out), "stages": stages}
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        log(f"results in {out / 'results.json'}")
        return results
    results = {
        "recipe": recipe.name,
        "output": str(out),
        **stages[-1],
        "stages": stages,
        "wall_seconds": time.perf_counter() - started,
    }
    if recipe.output.export:
        formats = outcome.stage.export or [default_format(outcome.student)]
        for i, fmt in enumerate(formats):
            target = out / ("student" if i == 0 else f"student-{fmt}")
            export(outcome.student, target, fmt)
            results.setdefault("exports", {})[fmt] = str(target)
        log(f"student exported to {out / 'student'} ({formats[0]})")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if show:
        print_table(results, title=f"{recipe.name}: teacher vs student")
    log(f"results in {out / 'results.json'}")
    return results


def build_stores(recipe: Recipe, out: str | Path | None = None) -> list[str]:
    """``kdforge store build``: the knowledge store of every cached teacher whose model exists, no training."""
    out = Path(out or recipe.output.dir or Path("runs") / recipe.name)
    if not any(t.mode == "cached" for stage in recipe.stages for t in stage.teachers):
        raise StoreError(f"no teacher of recipe {recipe.name!r} has mode: cached, so there is no store to build")
    pipeline = Pipeline(recipe, out)
    stores: list[str] = []
    for index, stage in enumerate(recipe.stages):
        if any(t.mode == "cached" for t in stage.teachers):
            stores += pipeline.build_stores(index)
        if pipeline.finished(index):
            pipeline.outputs[stage.name] = stage_output(out, stage)
    return stores


def evaluate_model(model_path: str, task_name: str, source: DataSource, split: str) -> dict[str, float]:
    """``kdforge eval``: score one saved model on a labelled source."""
    from kdforge.recipe.schema import TaskSpec

    task = TASKS.get(task_name)(TaskSpec(name=task_name))
    return score_model(load_model(model_path, kind=task.kind), task, source, split)


def score_model(model: TextModel | OnnxTextModel, task: Task, source: DataSource, split: str) -> dict[str, float]:
    """The metrics of a loaded model on a labelled source (``kdforge eval``, and ``kdforge bench`` per model)."""
    if task.kind == "classifier" and model.kind != "classifier":
        raise ModelError(f"{model.name} is not a classifier")
    ds = task.load_eval(source, split)
    if not task.is_labelled(ds):
        raise DataError(f"{source.describe()} ({split}): no gold {'scores' if task.kind == 'embedding' else 'labels'}")
    return task.evaluate(model, ds, f"{source.describe()} ({split})")
