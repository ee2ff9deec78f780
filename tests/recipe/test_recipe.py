"""Recipes as YAML files: one-line errors (file, line, field, fix) and the shapes that load."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kdforge.errors import KdforgeError, RecipeError
from kdforge.recipe import Recipe, load_recipe
from kdforge.recipe.schema import DataSource, expand_env

# A valid flat recipe; {extra} is appended at the top level (no indentation).
FLAT = """\
teacher: minilm
task:
  name: sts
data:
  train: train.txt
"""


def write(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    """Write a recipe (and an empty train.txt beside it so data paths resolve)."""
    (folder / "train.txt").touch()
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based number of the first line of ``path`` that contains ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def error_of(path: Path) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert isinstance(info.value, KdforgeError)
    return message


def assert_at(message: str, path: Path, line: int) -> None:
    assert message.startswith(f"{path}:{line}: "), f"expected {path}:{line}: at the start of {message!r}"


# --------------------------------------------------------------------------- errors


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, FLAT + "trainer:\n  lr: 0.1\n")
    message = error_of(path)
    assert_at(message, path, line_of(path, "trainer:"))
    assert "unknown key 'trainer'" in message


def test_unknown_nested_key(tmp_path):
    path = write(tmp_path, FLAT + "student:\n  num_layer: 2\n")
    message = error_of(path)
    assert_at(message, path, line_of(path, "num_layer:"))
    assert "student" in message
    assert "unknown key 'num_layer'" in message


def test_unknown_key_inside_a_stage(tmp_path):
    path = write(
        tmp_path,
        """\
        teacher: minilm
        task: {name: sts}
        data: {train: train.txt}
        stages:
          - name: first
          - name: second
            trainig:
              lr: 0.1
        """,
    )
    message = error_of(path)
    assert_at(message, path, line_of(path, "trainig:"))
    assert "stages[1]" in message
    assert "unknown key 'trainig'" in message


def test_wrong_type(tmp_path):
    path = write(tmp_path, FLAT + 'training:\n  lr: 0.001\n  batch_size: "big"\n')
    message = error_of(path)
    assert_at(message, path, line_of(path, "batch_size:"))
    assert "training.batch_size" in message
    assert "integer" in message  # the fix: what the field expects


def test_value_out_of_range_in_a_stage(tmp_path):
    path = write(
        tmp_path,
        """\
        teacher: minilm
        task: {name: sts}
        data: {train: train.txt}
        stages:
          - name: first
          - name: second
            training:
              lr: -1
        """,
    )
    message = error_of(path)
    assert_at(message, path, line_of(path, "lr: -1"))
    assert "stages[1].training.lr" in message
    assert "greater than 0" in message


def test_error_in_a_top_level_default_points_at_the_line_written(tmp_path):
    """A bad top-level default is merged into every stage; the error must still point at
    the line the user wrote (training.batch_size at the top), not at a stage that does not
    mention it."""
    path = write(
        tmp_path,
        """\
        teacher: minilm
        task: {name: sts}
        data: {train: train.txt}
        training:
          batch_size: big
        stages:
          - name: first
          - name: second
        """,
    )
    message = error_of(path)
    assert "batch_size" in message
    assert_at(message, path, line_of(path, "batch_size: big"))


def test_missing_data_file_names_the_path(tmp_path):
    path = write(tmp_path, FLAT.replace("train.txt", "no_such_sentences.txt"))
    message = error_of(path)
    assert_at(message, path, line_of(path, "train:"))
    assert "data.train[0].path" in message
    assert "no_such_sentences.txt" in message
    assert "no such file or folder" in message


def test_missing_eval_file(tmp_path):
    path = write(tmp_path, FLAT + "  eval: missing-dev.csv\n")
    message = error_of(path)
    assert_at(message, path, line_of(path, "eval:"))
    assert "data.eval" in message and "missing-dev.csv" in message


def test_unknown_method_lists_valid_names(tmp_path):
    path = write(tmp_path, FLAT + "methods:\n  - name: kd\n  - name: distil_magic\n")
    message = error_of(path)
    assert_at(message, path, line_of(path, "distil_magic"))
    assert "methods[1]" in message
    assert "unknown method 'distil_magic'" in message
    assert "embedding_mse" in message and "kd" in message


def test_unknown_method_argument_lists_valid_arguments(tmp_path):
    path = write(tmp_path, FLAT + "methods:\n  - name: kd\n    temp: 2\n")
    message = error_of(path)
    assert_at(message, path, line_of(path, "name: kd"))
    assert "methods[0]" in message
    assert "'temp'" in message
    assert "temperature" in message  # the fix: the valid argument


def test_wrong_method_argument_type(tmp_path):
    path = write(tmp_path, FLAT + "methods:\n  - name: kd\n    temperature: hot\n")
    message = error_of(path)
    assert_at(message, path, line_of(path, "name: kd"))
    assert "methods[0]" in message
    assert "temperature" in message
    assert "number" in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, FLAT + "training:\n  lr: [0.1, 0.2\n  batch_size: 8\nexport: [hf]\n")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "not valid YAML" in message
    line = int(message[len(str(path)) + 1 :].split(":")[0])
    assert line >= line_of(path, "lr: [")


def test_invalid_yaml_bad_indentation(tmp_path):
    path = write(tmp_path, "teacher: minilm\ntask:\n  name: sts\n   bad: indent\n")
    message = error_of(path)
    assert_at(message, path, 4)
    assert "not valid YAML" in message


@pytest.mark.parametrize("text", ["- teacher: minilm\n- task: sts\n", "just a string\n", "", "42\n"])
def test_recipe_must_be_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    message = error_of(path)
    assert str(path) in message
    assert "mapping" in message


def test_missing_recipe_file(tmp_path):
    path = tmp_path / "nowhere" / "recipe.yaml"
    message = error_of(path)
    assert "not found" in message and str(path) in message


def test_recipe_path_that_is_a_folder(tmp_path):
    message = error_of(tmp_path)
    assert str(tmp_path) in message


def test_unknown_task_lists_valid_ones(tmp_path):
    path = write(tmp_path, FLAT.replace("name: sts", "name: regression"))
    message = error_of(path)
    assert_at(message, path, line_of(path, "name: regression"))
    assert "task.name" in message
    assert "unknown task 'regression'" in message
    assert "sts" in message and "classification" in message


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "teacher: minilm\ntask:\n  name: sts\n")
    message = error_of(path)
    assert str(path) in message
    assert "missing required key 'data'" in message


def test_empty_train_list(tmp_path):
    path = write(tmp_path, "teacher: minilm\ntask: {name: sts}\ndata:\n  train: []\n")
    message = error_of(path)
    assert "data.train" in message and "at least one" in message


def test_finetune_stage_with_teacher(tmp_path):
    path = write(
        tmp_path,
        """\
        task: {name: classification}
        data: {train: train.txt}
        stages:
          - name: tune
            kind: finetune
            teacher: minilm
            student: some-backbone
        """,
    )
    message = error_of(path)
    assert_at(message, path, line_of(path, "- name: tune"))
    assert "stages[0]" in message
    assert "finetune" in message and "no teacher" in message


def test_finetune_stage_without_student_model(tmp_path):
    path = write(
        tmp_path,
        """\
        task: {name: classification}
        data: {train: train.txt}
        stages:
          - name: tune
            kind: finetune
        """,
    )
    message = error_of(path)
    assert "stages[0]" in message and "student.model" in message


def test_distill_stage_without_teacher_flat(tmp_path):
    path = write(tmp_path, "student: {num_layers: 2}\ntask: {name: sts}\ndata: {train: train.txt}\n")
    message = error_of(path)
    assert str(path) in message
    assert "needs a 'teacher'" in message


def test_distill_stage_without_teacher_in_stages(tmp_path):
    path = write(
        tmp_path,
        """\
        task: {name: sts}
        data: {train: train.txt}
        stages:
          - name: only
            student: {num_layers: 2}
        """,
    )
    message = error_of(path)
    assert_at(message, path, line_of(path, "- name: only"))
    assert "stages[0]" in message and "needs a 'teacher'" in message


@pytest.mark.parametrize("reference", ["stage:nope", "stage:second"])
def test_stage_reference_to_unknown_or_later_stage(tmp_path, reference):
    path = write(
        tmp_path,
        f"""\
        teacher: minilm
        task: {{name: sts}}
        data: {{train: train.txt}}
        stages:
          - name: first
            teacher: {reference}
          - name: second
        """,
    )
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert f"'{reference}'" in message
    assert "stage 'first'" in message
    assert "no earlier stage" in message


def test_stage_reference_lists_earlier_stages(tmp_path):
    path = write(
        tmp_path,
        """\
        teacher: minilm
        task: {name: sts}
        data: {train: train.txt}
        stages:
          - name: first
          - name: second
            student: stage:frist
        """,
    )
    message = error_of(path)
    assert "'stage:frist'" in message
    assert "earlier: first" in message


def test_duplicate_stage_names(tmp_path):
    path = write(
        tmp_path,
        """\
        teacher: minilm
        task: {name: sts}
        data: {train: train.txt}
        stages:
          - name: same
          - name: same
        """,
    )
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "'same'" in message and "unique" in message


def test_layers_and_num_layers_disagree(tmp_path):
    path = write(tmp_path, FLAT + "student:\n  layers: [0, 2]\n  num_layers: 3\n")
    message = error_of(path)
    assert_at(message, path, line_of(path, "student:"))
    assert "student" in message
    assert "'layers' has 2 entries but 'num_layers' is 3" in message


def test_student_model_may_be_cut(tmp_path):
    path = write(tmp_path, FLAT + "student:\n  model: some/model\n  num_layers: 3\n")
    student = load_recipe(path).stages[0].student
    assert student.model == "some/model" and student.num_layers == 3 and student.cuts


def test_negative_layer_index(tmp_path):
    path = write(tmp_path, FLAT + "student:\n  layers: [-1, 2]\n")
    message = error_of(path)
    assert "student" in message and "0-based" in message


def test_more_problems_are_counted(tmp_path):
    path = write(tmp_path, FLAT + "training:\n  batch_size: big\n  lr: fast\n")
    message = error_of(path)
    assert "training.batch_size" in message
    assert "(and 1 more problem)" in message


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    ("task", "method"), [("sts", "embedding_mse"), ("classification", "kd"), ("ranking", "margin_mse"), ("mlm", "kd")]
)
def test_a_distill_stage_without_methods_gets_its_tasks_default(tmp_path, task, method):
    path = write(tmp_path, FLAT.replace("name: sts", f"name: {task}"))
    assert [m.name for m in load_recipe(path).stages[0].methods] == [method]


def test_flat_recipe_is_one_stage_with_defaults(tmp_path):
    path = write(tmp_path, FLAT)
    recipe = load_recipe(path)
    assert recipe.is_flat
    assert len(recipe.stages) == 1
    stage = recipe.stages[0]
    assert stage.name == "distill"
    assert stage.kind == "distill"
    assert stage.teacher is not None and stage.teacher.model == "minilm"
    assert stage.task.name == "sts"
    assert [m.name for m in stage.methods] == ["embedding_mse"]
    assert stage.methods[0].weight == 1.0
    assert stage.training.batch_size == 32
    assert stage.training.lr == pytest.approx(5e-5)
    assert stage.student.model is None and stage.student.init == "teacher"
    assert [Path(s.path) for s in stage.data.train] == [(tmp_path / "train.txt").resolve()]
    assert recipe.name == "kdforge-run" and recipe.seed == 42


def test_classification_default_method_is_kd(tmp_path):
    path = write(tmp_path, FLAT.replace("name: sts", "name: classification"))
    stage = load_recipe(path).stages[0]
    assert [m.name for m in stage.methods] == ["kd"]


def test_explicit_methods_are_kept_with_args(tmp_path):
    path = write(
        tmp_path,
        FLAT.replace("name: sts", "name: classification")
        + "methods:\n  - name: kd\n    temperature: 4\n    weight: 0.5\n  - name: ce\n",
    )
    methods = load_recipe(path).stages[0].methods
    assert [m.name for m in methods] == ["kd", "ce"]
    assert methods[0].args == {"temperature": 4}
    assert methods[0].weight == 0.5


def test_finetune_default_method_is_ce(tmp_path):
    path = write(
        tmp_path,
        """\
        task: {name: classification}
        data: {train: train.txt}
        stages:
          - name: tune
            kind: finetune
            student: some-backbone
          - name: distill
            teacher: stage:tune
            student: {num_layers: 2}
        """,
    )
    recipe = load_recipe(path)
    assert not recipe.is_flat
    tune, distill = recipe.stages
    assert tune.kind == "finetune" and tune.teacher is None
    assert [m.name for m in tune.methods] == ["ce"]
    assert distill.teacher.model == "stage:tune"
    assert [m.name for m in distill.methods] == ["kd"]


def test_multi_stage_merges_top_level_defaults(tmp_path):
    path = write(
        tmp_path,
        """\
        name: two-step
        teacher: minilm
        task: {name: sts}
        data: {train: train.txt}
        training:
          batch_size: 8
          lr: 0.001
          max_steps: 10
        stages:
          - name: first
            student: {num_layers: 4}
          - name: second
            teacher: stage:first
            student: {num_layers: 2}
            training:
              lr: 0.01
        """,
    )
    recipe = load_recipe(path)
    assert recipe.name == "two-step"
    first, second = recipe.stages
    assert first.teacher.model == "minilm"
    assert first.training.batch_size == 8 and first.training.lr == pytest.approx(0.001)
    assert second.teacher.model == "stage:first"
    assert second.training.lr == pytest.approx(0.01)
    assert second.training.batch_size == 8  # kept from the top level
    assert second.training.max_steps == 10
    assert first.student.num_layers == 4 and second.student.num_layers == 2
    assert second.task.name == "sts"
    assert [Path(s.path) for s in second.data.train] == [(tmp_path / "train.txt").resolve()]


def test_student_reference_to_earlier_stage(tmp_path):
    path = write(
        tmp_path,
        """\
        teacher: minilm
        task: {name: sts}
        data: {train: train.txt}
        stages:
          - name: first
          - name: second
            student: stage:first
        """,
    )
    assert load_recipe(path).stages[1].student.model == "stage:first"


def test_env_default_expansion_in_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("KDFORGE_TEST_DATA", raising=False)
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "s.txt").write_text("a\n")
    path = write(tmp_path, FLAT.replace("train.txt", f"${{KDFORGE_TEST_DATA:-{folder}}}/s.txt"))
    assert Path(load_recipe(path).stages[0].data.train[0].path) == (folder / "s.txt").resolve()


def test_env_variable_wins_over_default(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (real / "s.txt").write_text("a\n")
    monkeypatch.setenv("KDFORGE_TEST_DATA", str(real))
    path = write(tmp_path, FLAT.replace("train.txt", "${KDFORGE_TEST_DATA:-/nonexistent}/s.txt"))
    assert Path(load_recipe(path).stages[0].data.train[0].path) == (real / "s.txt").resolve()


def test_expand_env_function(monkeypatch):
    monkeypatch.setenv("KDF_A", "x")
    monkeypatch.delenv("KDF_B", raising=False)
    assert expand_env("${KDF_A}/${KDF_B:-d}/${KDF_B}/z") == "x/d//z"
    assert expand_env("no vars") == "no vars"


def test_relative_paths_resolved_against_recipe_folder(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    (recipes / "data").mkdir(parents=True)
    (recipes / "data" / "s.txt").write_text("a\n")
    (recipes / "data" / "dev.csv").write_text("x\n")
    path = recipes / "r.yaml"
    path.write_text("teacher: minilm\ntask: {name: sts}\ndata:\n  train: data/s.txt\n  eval: data/dev.csv\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    data = load_recipe(path).stages[0].data
    assert Path(data.train[0].path) == (recipes / "data" / "s.txt").resolve()
    assert Path(data.eval.path) == (recipes / "data" / "dev.csv").resolve()
    assert Path(data.train[0].path).is_absolute()


def test_working_directory_wins_over_recipe_folder(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    (recipes / "data").mkdir(parents=True)
    (recipes / "data" / "s.txt").write_text("recipe folder\n")
    cwd = tmp_path / "cwd"
    (cwd / "data").mkdir(parents=True)
    (cwd / "data" / "s.txt").write_text("working directory\n")
    path = recipes / "r.yaml"
    path.write_text("teacher: minilm\ntask: {name: sts}\ndata:\n  train: data/s.txt\n")
    monkeypatch.chdir(cwd)
    assert Path(load_recipe(path).stages[0].data.train[0].path) == (cwd / "data" / "s.txt").resolve()


def test_missing_relative_path_lists_both_places_tried(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    path = recipes / "r.yaml"
    path.write_text("teacher: minilm\ntask: {name: sts}\ndata:\n  train: data/none.txt\n")
    monkeypatch.chdir(tmp_path)
    message = error_of(path)
    assert "data/none.txt" in message
    assert str(recipes / "data" / "none.txt") in message


def test_data_source_forms(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    path = write(
        tmp_path,
        """\
        teacher: minilm
        task: {name: classification}
        data:
          train:
            - a.txt
            - {path: train.txt, text: sentence, label: y, limit: 5}
          eval: {hub: glue, subset: sst2, split: validation}
        """,
    )
    data = load_recipe(path).stages[0].data
    assert [Path(s.path).name for s in data.train] == ["a.txt", "train.txt"]
    assert data.train[1].text == "sentence" and data.train[1].label == "y" and data.train[1].limit == 5
    assert data.eval.hub == "glue" and data.eval.path is None
    assert data.eval.describe() == "hub:glue[validation]"


def test_data_source_needs_exactly_one_origin(tmp_path):
    path = write(tmp_path, FLAT + "  eval: {hub: glue, path: train.txt}\n")
    message = error_of(path)
    assert "data.eval" in message and "exactly one of 'path' or 'hub'" in message


def test_from_yaml(tmp_path):
    path = write(tmp_path, FLAT + "training:\n  batch_size: 4\n")
    recipe = Recipe.from_yaml(path)
    assert isinstance(recipe, Recipe)
    assert recipe.stages[0].training.batch_size == 4
    assert Recipe.from_yaml(str(path)).stages[0].training.batch_size == 4
    with pytest.raises(RecipeError):
        Recipe.from_yaml(tmp_path / "absent.yaml")


def test_overrides_are_merged(tmp_path):
    path = write(tmp_path, FLAT)
    recipe = load_recipe(path, overrides={"name": "overridden", "seed": 7})
    assert recipe.name == "overridden" and recipe.seed == 7


def test_data_source_from_string(tmp_path):
    (tmp_path / "x.tsv").write_text("sentence\tlabel\na\t1\n")
    source = DataSource.model_validate(str(tmp_path / "x.tsv"))
    assert source.path == str((tmp_path / "x.tsv").resolve())
    assert source.format == "auto"


def test_yaml_reads_on_yes_and_no_as_words_and_true_false_as_booleans(tmp_path):
    path = write(
        tmp_path,
        FLAT + "methods:\n  - name: cosine\n    on: embedding\n" + "output:\n  benchmark: false\n  dir: no\n",
    )
    recipe = load_recipe(path)
    method = recipe.stages[0].methods[0]
    assert method.name == "cosine" and method.args == {"on": "embedding"}  # YAML 1.1: {True: "embedding"}
    assert recipe.output.benchmark is False
    assert Path(recipe.output.dir).name == "no"
