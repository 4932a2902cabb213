"""``-p NAME=VALUE`` values, the parameters each notebook declares, and what each notebook of a run is given."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Mapping, Sequence

from runner.profiles import NOTEBOOKS_DIR, RunError, profile
from skinlib import study


def parse_value(text: str) -> Any:
    """A ``-p name=value`` value: a Python/JSON literal (``None``, ``3``, ``[75, 75]``, ``true``) or a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false", "null", "none"):
        return {"true": True, "false": False}.get(lowered)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: Sequence[str]) -> dict[str | None, dict[str, Any]]:
    """``["epochs=2", "03:batch_size=16"]`` -> ``{None: {"epochs": 2}, "03_finetune_vgg16": {"batch_size": 16}}``."""
    overrides: dict[str | None, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise RunError(f"-p {item!r}: write name=value (or NN:name=value for one notebook), e.g. -p epochs=2")
        target = None
        if ":" in name:
            number, _, name = name.partition(":")
            try:
                target = study.get(number).notebook
            except KeyError as error:
                raise RunError(f"-p {item!r}: {error.args[0]}") from None
        overrides.setdefault(target, {})[name.strip()] = parse_value(value)
    return overrides


def notebook_parameters(notebook_path: Path) -> dict[str, Any]:
    """The default of every parameter in a notebook's ``parameters`` cell (evaluated literals)."""
    import papermill

    inferred = papermill.inspect_notebook(str(notebook_path))
    return {name: parse_value(info["default"]) for name, info in inferred.items()}


def plan_parameters(steps: Sequence[study.Step], profile_name: str, run_values: Mapping[str, Any],
                    overrides: Mapping[str | None, Mapping[str, Any]],
                    notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, dict[str, Any]]:
    """The parameters each notebook gets: its profile's, then the run's (data, out ...), then ``-p`` overrides.

    Only names the notebook declares are passed; a ``-p`` name no selected notebook declares is an error.
    """
    values = profile(profile_name)
    declared = {step.notebook: set(notebook_parameters(notebooks_dir / f"{step.notebook}.ipynb")) for step in steps}
    for target, names in overrides.items():
        scope = [target] if target else [step.notebook for step in steps]
        for name in names:
            if not any(name in declared.get(notebook, ()) for notebook in scope):
                known = sorted(set().union(*(declared.get(nb, set()) for nb in scope)))
                raise RunError(f"-p {name}=...: no parameter {name!r} in {', '.join(scope)}; "
                               f"their parameters: {', '.join(known)}")
    planned = {}
    for step in steps:
        merged = {**values[step.notebook], **run_values, **overrides.get(None, {}), **overrides.get(step.notebook, {})}
        planned[step.notebook] = {k: v for k, v in merged.items() if k in declared[step.notebook]}
    return planned
