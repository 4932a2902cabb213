"""The grid of a sweep: its axes, one folder per point, one task per notebook run, and what is already done.

Axes: ``--protocol study,grouped``, ``--seeds 0-4`` (or ``0,1,2``), ``--folds 5`` (folds 0..4 of the grouped
protocol; the study's protocols are one fixed split and get no folds) and ``-p`` values listed with ``|``
(``-p 'recipe=study|corrected'``, ``-p 'image_size=[64, 64]|[75, 100]'``): a ``|`` outside brackets and quotes
separates the values of a list, so ``[75, 75]`` stays one value, a list. Every point of the cross product runs the
selected notebooks into ``<out>/<protocol>/<recipe>/seed<k>[/fold<j>]/`` (another listed parameter adds a
``<name>=<value>`` folder after the recipe; ``<recipe>`` is ``default`` when neither a list nor one ``-p recipe=``
names it, each notebook then running under its own). A run is complete when its record is present and its executed
notebook finished without an error; a run that left an executed copy without completing is resumed
(``resume=True``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from runner.parameters import parse_overrides, plan_parameters
from runner.profiles import RunError
from skinlib import outputs, study

LIST_SEPARATOR = "|"


@dataclass(frozen=True)
class Task:
    """One notebook run of the sweep: where, with what, and after which other tasks (09 after its members)."""

    key: str  # "<folder relative to out>/<notebook>"
    folder: Path
    step: study.Step
    parameters: dict[str, Any] = field(compare=False)
    after: tuple[str, ...] = ()
    point: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def executed(self) -> Path:
        return self.folder / "notebooks" / f"{self.step.notebook}.ipynb"


def split_list(text: str) -> list[str]:
    """``'study|corrected'`` -> ``['study', 'corrected']``; ``'[64, 64]|[75, 100]'`` -> two lists' texts. A ``|``
    inside brackets or quotes does not separate."""
    items, depth, quote, start = [], 0, None, 0
    for position, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == LIST_SEPARATOR and depth == 0:
            items.append(text[start:position])
            start = position + 1
    items.append(text[start:])
    if any(not item.strip() for item in items):
        raise RunError(f"-p ...={text!r}: an empty value in the list; separate values with '|', e.g. study|corrected")
    return items


def parse_grid(items: Sequence[str]) -> tuple[dict, list[tuple[str | None, str, list[Any]]]]:
    """``-p`` items -> (the fixed overrides, the listed ones: ``(notebook or None, name, [values])``)."""
    fixed, axes = [], []
    for item in items:
        name, sep, value = item.partition("=")
        values = split_list(value) if sep else [value]
        if len(values) == 1:
            fixed.append(item)
            continue
        parsed = [parse_overrides([f"{name}={v}"]) for v in values]
        target = next(iter(parsed[0]))
        key = next(iter(parsed[0][target]))
        axes.append((target, key, [p[target][key] for p in parsed]))
    return parse_overrides(fixed), axes


def parse_seeds(text: str | None) -> list[int | None]:
    """``'0-4'`` -> [0, 1, 2, 3, 4]; ``'0,1,7'`` -> [0, 1, 7]; ``'0-2,9'`` -> [0, 1, 2, 9]; None -> [None]."""
    if not text:
        return [None]
    seeds = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise RunError(f"--seeds {text!r}: give whole numbers and ranges separated by commas, e.g. 0-4 or 0,1,2")
        seeds += range(int(match[1]), int(match[2] or match[1]) + 1)
    if len(set(seeds)) != len(seeds):
        raise RunError(f"--seeds {text!r}: a seed appears twice")
    return seeds


def points(protocols: Sequence[str], seeds: Sequence[int | None], folds: int | None,
           axes: Sequence[tuple[str | None, str, list[Any]]]) -> list[dict[str, Any]]:
    """The cross product, one dict per point: protocol, seed, folds, fold and each listed parameter's value."""
    if folds is not None and "grouped" not in protocols:
        raise RunError(f"--folds {folds}: cross-validation splits the grouped protocol; add --protocol grouped")
    found = []
    for protocol, seed, *values in itertools.product(protocols, seeds, *(values for _, _, values in axes)):
        fold_range = range(folds) if folds is not None and protocol == "grouped" else [None]
        for fold in fold_range:
            point = {"protocol": protocol, "seed": seed, "folds": None if fold is None else folds, "fold": fold}
            point["listed"] = tuple((target, name, value) for (target, name, _), value in zip(axes, values))
            found.append(point)
    return found


def _segment(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-") or "none"


def folder_of(out_dir: Path, point: Mapping[str, Any], recipe: str = "default") -> Path:
    """``<out>/<protocol>/<recipe>/[<name>=<value>/]seed<k>[/fold<j>]``; ``recipe``: the one every notebook runs
    under when the sweep does not list it ("default": each notebook's own)."""
    folder = out_dir / point["protocol"]
    listed = {name: value for _, name, value in point["listed"]}
    folder /= _segment(listed.pop("recipe", recipe))
    for name, value in listed.items():
        folder /= f"{name}={_segment(value)}"
    folder /= "seed-default" if point["seed"] is None else f"seed{point['seed']}"
    return folder if point["fold"] is None else folder / f"fold{point['fold']}"


def point_overrides(overrides: Mapping, point: Mapping[str, Any]) -> dict:
    """The ``-p`` overrides of one point: the fixed ones, the point's listed values, its seed, folds and fold."""
    merged = {target: dict(values) for target, values in overrides.items()}
    common = merged.setdefault(None, {})
    for key in ("seed", "folds", "fold"):
        if point[key] is not None:
            common[key] = point[key]
    for target, name, value in point["listed"]:
        merged.setdefault(target, {})[name] = value
    return merged


def plan(steps: Sequence[study.Step], profile_name: str, out_dir: Path, run_values: Mapping[str, Any],
         overrides: Mapping, grid: Sequence[Mapping[str, Any]]) -> list[Task]:
    """Every task of the sweep, 09 after the members that run in the same folder."""
    tasks = []
    fixed = overrides.get(None, {}).get("recipe", "default")  # -p recipe=corrected names its folder
    for point in grid:
        folder = folder_of(out_dir, point, fixed)
        values = {**run_values, "out_dir": str(folder), "protocol": point["protocol"], "resume": False}
        planned = plan_parameters(steps, profile_name, values, point_overrides(overrides, point))
        here = {step.number: f"{folder.relative_to(out_dir).as_posix()}/{step.notebook}" for step in steps}
        for step in steps:
            after = tuple(here[m] for m in step.members if m in here)
            tasks.append(Task(here[step.number], folder, step, planned[step.notebook], after, dict(point)))
    return tasks


def is_complete(task: Task) -> bool:
    """A record is present (the EDA writes none) and the executed notebook finished without an error."""
    if (task.step.model or task.step.members) and not outputs.RunFolder(task.folder, task.step.number).record.is_file():
        return False
    return executed_status(task) == "ok"


def executed_status(task: Task) -> str | None:
    """``"ok"``, ``"failed"`` (an error or an interruption), or None (no executed copy)."""
    import nbformat

    if not task.executed.is_file():
        return None
    try:
        papermill = nbformat.read(task.executed, as_version=4).metadata.get("papermill", {})
    except Exception:  # a copy cut short: not complete
        return "failed"
    if papermill.get("exception") or papermill.get("status") == "interrupted" or not papermill.get("end_time"):
        return "failed"
    return "ok"
