"""Read a YAML recipe and turn validation failures into one line: file, line, field, fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kdforge.errors import RecipeError
from kdforge.recipe.schema import Recipe


class RecipeLoader(yaml.SafeLoader):
    """YAML 1.2's booleans, only ``true`` / ``false``.

    PyYAML follows YAML 1.1, where ``on``, ``off``, ``yes`` and ``no`` are booleans too: a
    method's ``on: embedding`` (``cosine``) would arrive as ``{True: 'embedding'}``.
    """


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Load and validate ``path``; ``overrides`` are merged on top (as the CLI's flags)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    text = path.read_text()
    try:
        data = yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (teacher:, student:, task: ...)")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate_recipe(data, source=path, text=text)


def validate_recipe(data: dict[str, Any], source: Path | None = None, text: str | None = None) -> Recipe:
    base = str(source.parent) if source else None
    flat = "stages" not in data
    try:
        return Recipe.model_validate(data, context={"base": base})
    except ValidationError as err:
        raise RecipeError(_one_line(err, data, source, text, flat)) from None


def _written_at(loc: list, data: dict, flat: bool) -> list:
    """The error's path as the user wrote it: a stage key inherited from the top level points there."""
    if flat and loc[:2] == ["stages", 0]:
        return loc[2:]
    if len(loc) >= 3 and loc[0] == "stages" and isinstance(loc[1], int):
        stages = data.get("stages")
        stage = stages[loc[1]] if isinstance(stages, list) and loc[1] < len(stages) else None
        if isinstance(stage, dict) and loc[2] not in stage and loc[2] in data:
            return loc[2:]
    return loc


def _one_line(err: ValidationError, data: dict, source: Path | None, text: str | None, flat: bool) -> str:
    problems = {(tuple(_written_at(list(e["loc"]), data, flat)), e["msg"]): e for e in err.errors()}
    first = err.errors()[0]
    loc = _written_at(list(first["loc"]), data, flat)
    field = _dotted(loc) or "recipe"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}" if loc else "unknown key"
        field = _dotted(loc[:-1]) or "recipe"
    elif first["type"] == "missing":
        message = f"missing required key {loc[-1]!r}"
        field = _dotted(loc[:-1]) or "recipe"
    line = _line_of(text, loc) if text else None
    where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}{field}: {message}{suffix}"


def _dotted(loc: list) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(text: str, loc: list) -> int | None:
    """The 1-based line of the deepest YAML node on ``loc`` that exists in the file."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child, best = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            best = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return best
