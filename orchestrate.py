"""The papermill orchestration behind ``run_all.py`` (beside it, not part of the importable library).

Profiles: ``full`` runs every notebook with the defaults of its own ``parameters`` cell (the study's settings,
which the notebooks take from ``skinlib.study``); ``smoke`` applies :data:`SMOKE` on top: every notebook end to end
in minutes on a small CPU (a stratified subset, small images, one epoch per stage, random weights, eager). No
parameter default is copied here: ``notebook_parameters`` reads them with ``papermill.inspect_notebook``.

Each notebook runs in a fresh kernel through papermill, with ``cwd`` set to the notebooks folder; the executed copy
goes to ``<run>/notebooks/`` (kept, traceback included, when a cell fails). :func:`write_results` then gathers the
records of ``<run>/results/*.json`` (``skinlib.outputs``) into ``results.csv`` and ``results.md``: the study's table
with this run's numbers beside the study's.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from skinlib import outputs, study

PROJECT = Path(__file__).resolve().parent
NOTEBOOKS_DIR = PROJECT / "notebooks"
KERNEL = "python3"
PROFILES = ("smoke", "full")

SMOKE: tuple[tuple[str, str, Any], ...] = (
    # parameter     notebooks     smoke value (minutes on 2 CPU cores; the full profile passes nothing)
    ("subset",      "01",         300),
    ("subset",      "02-08",      240),
    ("image_size",  "01",         [48, 64]),
    ("image_size",  "02",         [32, 32]),
    ("image_size",  "03,06,08",   [32, 32]),
    ("image_size",  "04,05,07",   [75, 75]),   # keras.applications' smallest for the Inception networks
    ("epochs",      "02-08",      1),
    ("batch_size",  "02-08",      256),        # one step per smoke epoch
    ("weights",     "03-08",      None),       # no ImageNet download
    # The study's BN workaround (zeroed moving statistics, rebuilt by training) cannot recover in one step: the
    # deep BN backbones would predict NaN, so their smoke runs take the corrected recipe (BN frozen).
    ("recipe",      "04-08",      "corrected"),
    ("eager",       "02-09",      True),
)
"""(parameter, notebooks, value) of the smoke profile. Notebooks: numbers, ranges ("02-08") and lists ("03,06")."""


class RunError(Exception):
    """A bad run_all request (unknown notebook or parameter, bad value); the message says what to do."""


def _numbers(spec: str) -> list[str]:
    """ "02-08" -> ["02", ..., "08"]; "03,06,08" -> ["03", "06", "08"]."""
    numbers = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        numbers += [f"{n:02d}" for n in range(int(first), int(last or first) + 1)]
    return numbers


def profile(name: str) -> dict[str, dict[str, Any]]:
    """``{notebook: {parameter: value}}``: what a profile passes to each notebook on top of its defaults."""
    if name not in PROFILES:
        raise RunError(f"unknown profile {name!r}; accepted: {', '.join(PROFILES)}")
    values: dict[str, dict[str, Any]] = {step.notebook: {} for step in study.STEPS}
    if name == "smoke":
        for parameter, notebooks, value in SMOKE:
            for number in _numbers(notebooks):
                values[study.get(number).notebook][parameter] = value
    return values


def profile_frame(notebooks_dir: Path = NOTEBOOKS_DIR) -> pd.DataFrame:
    """Every notebook parameter: its default (the full profile), its smoke value, and its help (the comment)."""
    import papermill

    smoke = profile("smoke")
    rows = []
    for step in study.STEPS:
        for name, info in papermill.inspect_notebook(str(notebooks_dir / f"{step.notebook}.ipynb")).items():
            rows.append((step.number, name, info["default"], repr(smoke[step.notebook].get(name, parse_value(info["default"]))),
                         info.get("help", "")))
    frame = pd.DataFrame(rows, columns=["notebook", "parameter", "full (default)", "smoke", "help"])
    return frame.groupby(["parameter", "full (default)", "smoke", "help"], sort=False)["notebook"].agg(",".join) \
        .reset_index()[["parameter", "notebook", "full (default)", "smoke", "help"]]


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


def select(only: str | Iterable[str] | None) -> list[study.Step]:
    """The steps to run: all, or those named by ``--only`` ("03,04", "3", "03_finetune_vgg16")."""
    if not only:
        return list(study.STEPS)
    names = only.split(",") if isinstance(only, str) else list(only)
    try:
        wanted = {study.get(name.strip()).number for name in names if name.strip()}
    except KeyError as error:
        raise RunError(f"--only: {error.args[0]}") from None
    return [step for step in study.STEPS if step.number in wanted]


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
    declared = {step.notebook: set(notebook_parameters(notebooks_dir / f"{step.notebook}.ipynb"))
                for step in steps}
    for target, names in overrides.items():
        scope = [target] if target else [step.notebook for step in steps]
        for name in names:
            if not any(name in declared.get(notebook, ()) for notebook in scope):
                known = sorted(set().union(*(declared.get(nb, set()) for nb in scope)))
                raise RunError(f"-p {name}=...: no parameter {name!r} in {', '.join(scope)}; "
                               f"their parameters: {', '.join(known)}")
    planned = {}
    for step in steps:
        merged = {**values[step.notebook], **run_values, **overrides.get(None, {}),
                  **overrides.get(step.notebook, {})}
        planned[step.notebook] = {k: v for k, v in merged.items() if k in declared[step.notebook]}
    return planned


# --------------------------------------------------------------------------------------------------------
# Running notebooks
# --------------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What happened to one notebook."""

    notebook: str
    status: str  # "ok", "failed", "interrupted" or "skipped"
    seconds: float = 0.0
    executed: Path | None = None
    cell: int | None = None  # 1-based position of the failing cell in the executed copy
    execution_count: int | None = None
    source: str | None = None  # first line of the failing cell
    error: str | None = None  # "ValueError: message"

    def describe(self) -> str:
        """One line for the console (and the results table)."""
        if self.status == "ok":
            return f"ok in {format_seconds(self.seconds)}"
        if self.status == "interrupted":
            return f"INTERRUPTED (Ctrl-C) at cell {self.cell}: partial copy {self.executed}"
        if self.status == "skipped":
            return f"skipped ({self.error})" if self.error else "skipped"
        where = f"cell {self.cell}" if self.cell else "a cell"
        if self.execution_count:
            where += f" (In [{self.execution_count}])"
        source = f" `{self.source}`" if self.source else ""
        return f"FAILED at {where}{source}: {self.error} — executed copy: {self.executed}"


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``'1:15'``; under a minute: ``'12.3 s'``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _failing_cell(executed: Path, error) -> tuple[int | None, str | None]:
    """1-based index (in the executed copy, papermill's error banner excluded) and first line of the cell
    that raised, found by its error output."""
    import nbformat

    try:
        notebook = nbformat.read(executed, as_version=4)
    except Exception:
        return None, None
    cells = [c for c in notebook.cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    for number, cell in enumerate(cells, start=1):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            return number, first.strip()
    index = getattr(error, "cell_index", None)
    return (index + 1 if isinstance(index, int) else None), None


def execute(notebook: Path, executed: Path, parameters: Mapping[str, Any], *, cwd: Path = NOTEBOOKS_DIR,
            kernel_name: str = KERNEL, progress: bool = True, log_output: bool = False,
            timeout: float | None = None) -> Outcome:
    """Execute one notebook with papermill; return its :class:`Outcome` (never raises for a failing cell)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    name = notebook.stem
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=dict(parameters), cwd=str(cwd),
                                   kernel_name=kernel_name, progress_bar=progress, log_output=log_output,
                                   execution_timeout=timeout)
    except PapermillExecutionError as error:
        cell, source = _failing_cell(executed, error)
        return Outcome(name, "failed", time.perf_counter() - started, executed, cell, error.exec_count, source,
                       f"{error.ename}: {_first_line(error.evalue)}")
    except KeyboardInterrupt:
        cell = mark_interrupted(executed)
        return Outcome(name, "interrupted", time.perf_counter() - started, executed, cell)
    except Exception as error:  # kernel died, timeout, missing kernel: still a failed notebook, named
        return Outcome(name, "failed", time.perf_counter() - started, executed, None, None, None,
                       f"{type(error).__name__}: {_first_line(str(error))}")
    return Outcome(name, "ok", time.perf_counter() - started, executed)


def mark_interrupted(executed: Path) -> int | None:
    """Marks a partial executed copy as interrupted: papermill's status "interrupted" on the notebook, the cell
    that was running and the cells that never ran no longer "completed", and a banner first. Returns the 1-based
    position of the interrupted cell (None if no copy was written)."""
    import nbformat

    if not executed.is_file():
        return None
    notebook = nbformat.read(executed, as_version=4)
    running = None
    for position, cell in enumerate(notebook.cells, start=1):
        meta = cell.metadata.setdefault("papermill", {})
        if cell.cell_type != "code" or cell.get("execution_count") is not None:
            continue
        meta.update(status="interrupted" if running is None else "pending", exception=running is None)
        running = running or position
    notebook.metadata.setdefault("papermill", {}).update(status="interrupted", exception=True)
    banner = nbformat.v4.new_markdown_cell(
        f"**Interrupted** (Ctrl-C) at cell {running}: it and the cells after it did not finish. Run the notebook "
        "again (run_all.py into the same --out starts it cleanly; resume=True continues its training).")
    banner.metadata["tags"] = ["skinlib-interrupted"]
    notebook.cells.insert(0, banner)
    nbformat.write(notebook, executed)
    return running


def quiet_kernels(log_path: Path):
    """Sends what the notebook kernels print on their own stderr (TensorFlow, absl and ipykernel warnings) to
    ``log_path`` instead of the console; run_all.py's own messages keep the console. Returns the console stream."""
    console = os.fdopen(os.dup(2), "w", buffering=1)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the kernels' lifetime
    os.dup2(log.fileno(), 2)
    sys.stderr = console
    return console


def _first_line(text: str, limit: int = 300) -> str:
    line = next((line for line in str(text).splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_notebooks(steps: Sequence[study.Step], parameters: Mapping[str, Mapping[str, Any]], out_dir: Path, *,
                  notebooks_dir: Path = NOTEBOOKS_DIR, keep_going: bool = False, progress: bool = True,
                  log_output: bool = False, timeout: float | None = None, stream=None) -> list[Outcome]:
    """Run ``steps`` in order; stop at the first failure unless ``keep_going``, and at an interruption (Ctrl-C).
    Prints progress to ``stream`` (default: ``sys.stderr`` at call time)."""
    stream = stream or sys.stderr
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    failed = False
    for position, step in enumerate(steps, start=1):
        label = f"[{position}/{len(steps)}] {step.notebook}"
        if failed and not keep_going:
            outcomes.append(Outcome(step.notebook, "skipped", error="an earlier notebook failed"))
            print(f"{label}: skipped (an earlier notebook failed; --keep-going runs the rest)", file=stream)
            continue
        missing = [m for m in step.members if not any(o.notebook == study.get(m).notebook and o.status == "ok"
                                                        for o in outcomes)]
        if missing and any(study.get(m).notebook in {s.notebook for s in steps} for m in missing):
            note = f"needs the models of {', '.join(study.get(m).notebook for m in missing)}, which failed"
            outcomes.append(Outcome(step.notebook, "skipped", error=note))
            print(f"{label}: skipped ({note})", file=stream)
            continue
        print(f"{label}: running ...", file=stream, flush=True)
        outcome = execute(notebooks_dir / f"{step.notebook}.ipynb", out_dir / "notebooks" / f"{step.notebook}.ipynb",
                          parameters[step.notebook], cwd=notebooks_dir, progress=progress, log_output=log_output,
                          timeout=timeout)
        outcomes.append(outcome)
        if outcome.status == "interrupted":
            outcomes += [Outcome(s.notebook, "skipped", error="the run was interrupted") for s in steps[position:]]
            break
        failed = failed or outcome.status == "failed"
        print(f"{label}: {outcome.describe()}  (elapsed {format_seconds(time.perf_counter() - started)})",
              file=stream, flush=True)
    return outcomes


# --------------------------------------------------------------------------------------------------------
# The results table
# --------------------------------------------------------------------------------------------------------

RESULT_COLUMNS = (
    "notebook", "model", "status", "study_val_accuracy", "val_accuracy", "study_test_accuracy", "test_accuracy",
    "test_accuracy_low", "test_accuracy_high", "test_balanced_accuracy", "test_balanced_accuracy_low",
    "test_balanced_accuracy_high", "test_macro_f1", "test_macro_f1_low", "test_macro_f1_high", "test_auc",
    "test_auc_low", "test_auc_high", "test_melanoma_sensitivity", "isic2018_accuracy",
    "isic2018_balanced_accuracy", "study_depth", "depth", "study_params", "params", "n_train", "n_test",
    "test_sharing_lesion_with_train", "test_accuracy_leak_free", "protocol", "recipe", "seconds", "device", "backend",
)
"""Columns of results.csv: accuracies in percent; intervals are 95 % bootstrap intervals."""


def _pct(value) -> float:
    return math.nan if value is None else 100.0 * float(value)


def _metric(metrics: Mapping, part: str, name: str) -> float:
    report = metrics.get(part) or {}
    return _pct((report.get("metrics") or {}).get(name))


def _interval(metrics: Mapping, part: str, name: str) -> tuple[float, float]:
    bounds = ((metrics.get(part) or {}).get("intervals") or {}).get(name) or (None, None)
    return _pct(bounds[0]), _pct(bounds[1])


def result_row(step: study.Step, result: Mapping[str, Any] | None, outcome: Outcome | None) -> dict[str, Any]:
    """One row of the results table: the study's numbers, and this run's from its results JSON."""
    row: dict[str, Any] = {column: math.nan for column in RESULT_COLUMNS}
    row.update(notebook=step.notebook, model=step.model or ("ensemble" if step.members else "—"),
               status=outcome.status if outcome else ("ok" if result else "not run"),
               study_val_accuracy=step.validation_accuracy, study_test_accuracy=step.test_accuracy,
               study_depth=step.depth, study_params=step.params,
               seconds=round(outcome.seconds, 1) if outcome else math.nan)
    if not result:
        return row
    metrics = result.get("metrics", {})
    parameters = result.get("parameters") or {}
    environment = result.get("environment") or {}
    row.update(val_accuracy=_metric(metrics, "val", "accuracy"), test_accuracy=_metric(metrics, "test", "accuracy"),
               test_balanced_accuracy=_metric(metrics, "test", "balanced_accuracy"),
               test_macro_f1=_metric(metrics, "test", "macro_f1"), test_auc=_metric(metrics, "test", "roc_auc_macro"),
               test_melanoma_sensitivity=_metric(metrics, "test", "melanoma_sensitivity"),
               isic2018_accuracy=_metric(metrics, "isic2018", "accuracy"),
               isic2018_balanced_accuracy=_metric(metrics, "isic2018", "balanced_accuracy"),
               depth=result.get("depth"), params=(result.get("parameter_counts") or {}).get("total"),
               protocol=parameters.get("protocol"), recipe=parameters.get("recipe"),
               device=environment.get("device"), backend=environment.get("backend"))
    for name, column in (("accuracy", "test_accuracy"), ("balanced_accuracy", "test_balanced_accuracy"),
                         ("macro_f1", "test_macro_f1"), ("roc_auc_macro", "test_auc")):
        row[f"{column}_low"], row[f"{column}_high"] = _interval(metrics, "test", name)
    data = result.get("data") or {}
    row.update(n_train=(data.get("train") or {}).get("total"), n_test=(data.get("test") or {}).get("total"),
               test_sharing_lesion_with_train=(data.get("test") or {}).get("shares lesion with train"))
    leak_free = ((result.get("leak") or {}).get("leak-free part") or {}).get("accuracy")
    row["test_accuracy_leak_free"] = _pct(leak_free)
    return row


def collect(out_dir: Path, outcomes: Sequence[Outcome] = (), steps: Sequence[study.Step] | None = None) -> pd.DataFrame:
    """The results table of a run folder (rows: the training notebooks and the ensemble)."""
    by_name = {o.notebook: o for o in outcomes}
    rows = []
    for step in steps or study.STEPS:
        if step.model is None and not step.members:
            continue  # the EDA has no results row
        path = out_dir / "results" / f"{step.notebook}.json"
        result = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        outcome = by_name.get(step.notebook)
        if outcome is not None and outcome.status != "ok":
            result = None  # a stale file from an earlier run must not pass for this one's
        rows.append(result_row(step, result, outcome))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer() and digits == 0):
        return f"{int(value):,}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def _with_interval(value, low, high, digits: int = 1) -> str:
    text = _fmt(value, digits)
    if text != "—" and not (isinstance(low, float) and math.isnan(low)):
        text += f" [{_fmt(low, digits)}, {_fmt(high, digits)}]"
    return text


def markdown_table(table: pd.DataFrame) -> str:
    """The results table as GitHub Markdown: the study's columns, this run beside them, then what it adds."""
    header = ["Notebook", "Model", "Val acc. study", "Val acc. run", "Test acc. study", "Test acc. run [95% CI]",
              "Test acc. leak-free part", "Depth study / run", "Params study / run", "Balanced acc. [95% CI]",
              "Macro F1", "Macro AUC", "Status", "Time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.to_dict(orient="records"):
        f1 = _with_interval(row["test_macro_f1"] / 100 if not math.isnan(row["test_macro_f1"]) else math.nan,
                            row["test_macro_f1_low"] / 100, row["test_macro_f1_high"] / 100, 3)
        auc = _with_interval(row["test_auc"] / 100 if not math.isnan(row["test_auc"]) else math.nan,
                             row["test_auc_low"] / 100, row["test_auc_high"] / 100, 3)
        cells = [row["notebook"], row["model"], _fmt(row["study_val_accuracy"], 2), _fmt(row["val_accuracy"], 1),
                 _fmt(row["study_test_accuracy"], 2),
                 _with_interval(row["test_accuracy"], row["test_accuracy_low"], row["test_accuracy_high"]),
                 _fmt(row["test_accuracy_leak_free"], 1),
                 f"{_fmt(row['study_depth'], 0)} / {_fmt(row['depth'], 0)}",
                 f"{_fmt(row['study_params'], 0)} / {_fmt(row['params'], 0)}",
                 _with_interval(row["test_balanced_accuracy"], row["test_balanced_accuracy_low"],
                                row["test_balanced_accuracy_high"]),
                 f1, auc, row["status"],
                 format_seconds(row["seconds"]) if not math.isnan(row["seconds"]) else "—"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def write_results(out_dir: Path, outcomes: Sequence[Outcome], *, profile_name: str, settings: Mapping[str, Any],
                  wall_seconds: float, steps: Sequence[study.Step] | None = None) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.md`` under ``out_dir``; return their paths."""
    table = collect(out_dir, outcomes, steps)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    first = next((r for r in table.to_dict(orient="records") if isinstance(r["backend"], str)), {})
    failed = [o for o in outcomes if o.status == "failed"]
    lines = [
        f"# Results of run `{out_dir.name}`", "",
        f"Reproduction of \"{study.TITLE}\" ({study.SOURCE}) with skinlib.", "",
        f"- profile: **{profile_name}**" + (" (a plumbing check on a tiny subset with random weights: its "
                                            "accuracies say nothing about the models)" if profile_name == "smoke" else ""),
        *[f"- {key}: {value}" for key, value in settings.items()],
        f"- Keras backend: {first.get('backend', os.environ.get('KERAS_BACKEND', 'tensorflow'))}; "
        f"device: {first.get('device', '—')}",
        f"- wall time: {format_seconds(wall_seconds)} for {len(outcomes)} notebook(s); "
        f"{sum(o.status == 'ok' for o in outcomes)} ok, {len(failed)} failed", "",
        "Accuracies in percent; \"study\" columns are the study's reported numbers (its README), \"run\" columns "
        "this run's. Intervals are 95 % bootstrap intervals on the test set, resampling lesions. \"Leak-free part\": "
        "the test images whose lesion has no photo in training (all of them under the grouped and study_deleaked "
        "protocols).", "",
        markdown_table(table), "",
    ]
    if outcomes:
        lines += ["## Notebooks", ""] + [f"- `{o.notebook}`: {o.describe()}" for o in outcomes] + [""]
    md_path = out_dir / "results.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return md_path, csv_path


def cpu_warning(steps: Sequence[study.Step], profile_name: str) -> str | None:
    """A warning before a full-size run on a machine without an NVIDIA GPU: how much training it asks for, and
    the quicker alternatives. None when there is a GPU or nothing heavy to run."""
    import shutil

    if profile_name != "full" or shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists():
        return None
    heavy = [(step, sum(stage.epochs for stage in step.stages)) for step in steps if step.model]
    if not heavy:
        return None
    listing = ", ".join(f"{step.number} ({epochs} epochs at {step.image_size[0]}x{step.image_size[1]})"
                        for step, epochs in heavy)
    return (f"No NVIDIA GPU found: the full profile trains at the study's size on the CPU: {listing}, each epoch "
            "over about 8,000 images. On 2 CPU cores notebook 02 (the small baseline) takes minutes per 10 epochs; "
            "the ImageNet backbones need roughly 300 to 1,000 times its multiply-adds per image. For a quick check use `make run "
            "PROFILE=smoke` (about 7 minutes) or `--only 02`.")


SEED_METRICS = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_auc", "test_melanoma_sensitivity",
                "test_accuracy_leak_free")


def write_seed_summary(out_dir: Path, folders: Sequence[Path], seeds: Sequence[int],
                       steps: Sequence[study.Step]) -> tuple[Path, Path]:
    """``seeds.csv`` and ``seeds.md``: per notebook, the mean and standard deviation over the seeds' runs of the
    headline test metrics (in percent), and how many seeds finished."""
    tables = []
    for seed, folder in zip(seeds, folders):
        table = pd.read_csv(folder / "results.csv")
        tables.append(table.assign(seed=seed)[table["status"] == "ok"])
    runs = pd.concat(tables, ignore_index=True)
    grouped = runs.groupby("notebook", sort=False)[list(SEED_METRICS)]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_sd"))
    summary.insert(0, "seeds", runs.groupby("notebook", sort=False)["seed"].count())
    csv_path = out_dir / "seeds.csv"
    summary.to_csv(csv_path)
    lines = [f"# Runs over seeds {', '.join(map(str, seeds))}", "",
             "Mean ± standard deviation over the seeds (in percent; the seed sets the split, the augmentation and the "
             "training). Per-seed results: " + ", ".join(f"`{f.name}/results.md`" for f in folders) + ".", "",
             "| Notebook | Seeds | " + " | ".join(m.removeprefix("test_").replace("_", " ") for m in SEED_METRICS) + " |",
             "|" + "---|" * (len(SEED_METRICS) + 2)]
    for notebook, row in summary.iterrows():
        cells = [f"{row[f'{m}_mean']:.1f} ± {row[f'{m}_sd']:.1f}" if not math.isnan(row[f"{m}_mean"]) else "—"
                 for m in SEED_METRICS]
        lines.append(f"| {notebook} | {int(row['seeds'])} | " + " | ".join(cells) + " |")
    md_path = out_dir / "seeds.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path, csv_path


# --------------------------------------------------------------------------------------------------------
# The dataset check before a run
# --------------------------------------------------------------------------------------------------------

def check_dataset(data_dir: Path, images: str | None) -> tuple[str, str, str | None]:
    """``(status, message, images)``: status "ok" (with the image folder to use, found by ``data.locate`` when not
    given), "absent" (no metadata and no image folder: a download may be offered) or "malformed" (files are
    there but unusable: the message says what and how to fix it; never a download)."""
    from skinlib import data
    from skinlib.errors import DataError

    data_dir, images = data.locate(data_dir, images)
    try:
        data.load_metadata(data_dir, images=images)
        return "ok", f"dataset: {data_dir}" + (f" (images from {images}/)" if images else ""), images
    except DataError as error:
        problem = str(error)
    present = data_dir.is_dir() and any(
        path.name.startswith(("HAM10000_metadata", "HAM10000_images", "images")) for path in data_dir.iterdir())
    return ("malformed" if present else "absent"), problem, images


def missing_data_message(data_dir: Path, status: str, problem: str) -> tuple[str, list[str]]:
    """What is wrong and how to fix it; for an absent dataset, the parts a download would fetch."""
    from skinlib import download

    parts = download.missing_parts(data_dir, download.DEFAULT_PARTS)
    fetch = f"python -m skinlib download --dest {data_dir}" + (f" --parts {' '.join(parts)}" if parts else "")
    if status == "malformed":
        return (f"The dataset in '{data_dir}' cannot be used: {problem}\nFix the file named above; if official "
                f"files are missing, `{fetch}` fetches only those. Nothing was downloaded."), []
    return (f"{problem}\nPut the metadata CSV and the image folders (HAM10000_images_part_1/, "
            f"HAM10000_images_part_2/) in '{data_dir}', point --data at another folder, or download them: "
            f"`{fetch}`."), parts


def offer_download(data_dir: Path, parts: list[str], assume_yes: bool, stream=None) -> bool:
    """Say what a download would fetch, then ask (or, with ``assume_yes``, go ahead); True when downloaded."""
    from skinlib import download

    stream = stream or sys.stderr
    print(download.describe_plan(download.plan(data_dir, parts), data_dir), file=stream)
    if not assume_yes:
        if not sys.stdin.isatty():
            print("Not downloading without a terminal to confirm: rerun with --download-yes (make run "
                  "DOWNLOAD=yes), or download first.", file=stream)
            return False
        try:
            answer = input("Download it now? [y/N] ").strip().lower()
        except EOFError:
            answer = ""
        if answer not in ("y", "yes"):
            return False
    try:
        download.download(data_dir, parts)
    except Exception as error:
        print(f"Download failed: {error}", file=stream)
        return False
    return True
