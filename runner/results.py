"""``results.md`` / ``results.csv`` of a run folder and ``seeds.md`` / ``seeds.csv`` over seeds, from the records.

Records are read through ``skinlib.outputs`` only (``read_records``, ``headline``), which owns their structure.
Tables are written with pandas (``to_csv``, ``to_markdown``) and atomically: a full disk or an interruption
leaves the previous file, never half of one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from runner.execute import Outcome, format_interval
from runner.profiles import RunError
from skinlib import outputs, study

RESULT_COLUMNS = (
    "notebook", "model", "status", "study_val_accuracy", "val_accuracy", "study_test_accuracy", "test_accuracy",
    "test_accuracy_low", "test_accuracy_high", "test_balanced_accuracy", "test_balanced_accuracy_low",
    "test_balanced_accuracy_high", "test_macro_f1", "test_macro_f1_low", "test_macro_f1_high", "test_auc",
    "test_auc_low", "test_auc_high", "test_melanoma_sensitivity", "isic2018_accuracy",
    "isic2018_balanced_accuracy", "study_depth", "depth", "study_params", "params", "n_train", "n_test",
    "test_sharing_lesion_with_train", "test_accuracy_leak_free", "protocol", "recipe", "seconds", "device", "backend",
)
"""Columns of results.csv: accuracies in percent; intervals are 95 % bootstrap intervals."""

_FROM_HEADLINE = {  # results.csv column: the record's headline name (fractions, shown in percent)
    "val_accuracy": "val_accuracy", "test_accuracy": "test_accuracy",
    "test_balanced_accuracy": "test_balanced_accuracy", "test_macro_f1": "test_macro_f1",
    "test_auc": "test_roc_auc_macro", "test_melanoma_sensitivity": "test_melanoma_sensitivity",
    "isic2018_accuracy": "isic2018_accuracy", "isic2018_balanced_accuracy": "isic2018_balanced_accuracy",
    "test_accuracy_leak_free": "test_accuracy_leak_free",
}
_INTERVALS = {"test_accuracy": "test_accuracy", "test_balanced_accuracy": "test_balanced_accuracy",
              "test_macro_f1": "test_macro_f1", "test_auc": "test_roc_auc_macro"}
_AS_IS = ("depth", "params", "n_train", "n_test", "test_sharing_lesion_with_train", "protocol", "recipe", "device",
          "backend")


def _pct(value) -> float:
    return math.nan if value is None else 100.0 * float(value)


def result_row(step: study.Step, record: Mapping[str, Any] | None, outcome: Outcome | None) -> dict[str, Any]:
    """One row of the results table: the study's numbers, and this run's from its record."""
    row: dict[str, Any] = {column: math.nan for column in RESULT_COLUMNS}
    row.update(notebook=step.notebook, model=step.model or ("ensemble" if step.members else "—"),
               status=outcome.status if outcome else ("ok" if record else "not run"),
               study_val_accuracy=step.validation_accuracy, study_test_accuracy=step.test_accuracy,
               study_depth=step.depth, study_params=step.params,
               seconds=round(outcome.seconds, 1) if outcome else math.nan)
    flat = outputs.headline(record)
    for column, name in _FROM_HEADLINE.items():
        row[column] = _pct(flat.get(name))
    for column, name in _INTERVALS.items():
        row[f"{column}_low"], row[f"{column}_high"] = _pct(flat.get(f"{name}_low")), _pct(flat.get(f"{name}_high"))
    row.update({column: flat[column] for column in _AS_IS if flat.get(column) is not None})
    return row


def collect(out_dir: Path, outcomes: Sequence[Outcome] = (), steps: Sequence[study.Step] | None = None) -> pd.DataFrame:
    """The results table of a run folder (rows: the training notebooks and the ensemble)."""
    by_name = {o.notebook: o for o in outcomes}
    records = outputs.read_records(out_dir, steps)
    rows = []
    for step in steps or study.STEPS:
        if step.model is None and not step.members:
            continue  # the EDA has no results row
        outcome = by_name.get(step.notebook)
        stale = outcome is not None and outcome.status != "ok"  # an earlier run's file must not pass for this one's
        rows.append(result_row(step, None if stale else records.get(step.notebook), outcome))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _number(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{int(value):,}" if digits == 0 else f"{value:.{digits}f}"


def _with_interval(value, low, high, digits: int = 1, scale: float = 1.0) -> str:
    text = _number(value / scale, digits)
    if text != "—" and not math.isnan(low):
        text += f" [{_number(low / scale, digits)}, {_number(high / scale, digits)}]"
    return text


def markdown_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The results table as shown in results.md: the study's columns, this run beside them, then what it adds."""
    shown = pd.DataFrame({
        "Notebook": table["notebook"], "Model": table["model"],
        "Val acc. study": table["study_val_accuracy"].map(lambda v: _number(v, 2)),
        "Val acc. run": table["val_accuracy"].map(lambda v: _number(v, 1)),
        "Test acc. study": table["study_test_accuracy"].map(lambda v: _number(v, 2)),
        "Test acc. run [95% CI]": [_with_interval(r.test_accuracy, r.test_accuracy_low, r.test_accuracy_high)
                                   for r in table.itertuples()],
        "Test acc. leak-free part": table["test_accuracy_leak_free"].map(lambda v: _number(v, 1)),
        "Depth study / run": [f"{_number(r.study_depth, 0)} / {_number(r.depth, 0)}" for r in table.itertuples()],
        "Params study / run": [f"{_number(r.study_params, 0)} / {_number(r.params, 0)}" for r in table.itertuples()],
        "Balanced acc. [95% CI]": [_with_interval(r.test_balanced_accuracy, r.test_balanced_accuracy_low,
                                                  r.test_balanced_accuracy_high) for r in table.itertuples()],
        "Macro F1": [_with_interval(r.test_macro_f1, r.test_macro_f1_low, r.test_macro_f1_high, 3, 100)
                     for r in table.itertuples()],
        "Macro AUC": [_with_interval(r.test_auc, r.test_auc_low, r.test_auc_high, 3, 100) for r in table.itertuples()],
        "Status": table["status"],
        "Time": table["seconds"].map(lambda v: "—" if math.isnan(v) else format_interval(v)),
    })
    return shown


def write_text(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically; a full disk or another OS error becomes a RunError naming the file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise RunError(f"could not write {path}: {error.strerror or error} (free some space or choose another "
                       "--out; the notebooks' records under results/ are complete)") from None
    return path


def write_results(out_dir: Path, outcomes: Sequence[Outcome], *, profile_name: str, settings: Mapping[str, Any],
                  wall_seconds: float, steps: Sequence[study.Step] | None = None) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.md`` under ``out_dir``; return their paths."""
    table = collect(out_dir, outcomes, steps)
    csv_path = write_text(out_dir / "results.csv", table.to_csv(index=False))
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
        f"- wall time: {format_interval(wall_seconds)} for {len(outcomes)} notebook(s); "
        f"{sum(o.status == 'ok' for o in outcomes)} ok, {len(failed)} failed", "",
        "Accuracies in percent; \"study\" columns are the study's reported numbers (its README), \"run\" columns "
        "this run's. Intervals are 95 % bootstrap intervals on the test set, resampling lesions. \"Leak-free part\": "
        "the test images whose lesion has no photo in training (all of them under the grouped and study_deleaked "
        "protocols).", "",
        markdown_frame(table).to_markdown(index=False, disable_numparse=True), "",
    ]
    if outcomes:
        lines += ["## Notebooks", ""] + [f"- `{o.notebook}`: {o.describe()}" for o in outcomes] + [""]
    md_path = write_text(out_dir / "results.md", "\n".join(lines))
    return md_path, csv_path


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
    csv_path = write_text(out_dir / "seeds.csv", summary.to_csv())
    shown = pd.DataFrame({"Seeds": summary["seeds"].astype(int)}, index=summary.index)
    for metric in SEED_METRICS:
        shown[metric.removeprefix("test_").replace("_", " ")] = [
            "—" if math.isnan(mean) else f"{mean:.1f} ± {sd:.1f}"
            for mean, sd in zip(summary[f"{metric}_mean"], summary[f"{metric}_sd"])]
    lines = [f"# Runs over seeds {', '.join(map(str, seeds))}", "",
             "Mean ± standard deviation over the seeds (in percent; the seed sets the split, the augmentation and the "
             "training). Per-seed results: " + ", ".join(f"`{f.name}/results.md`" for f in folders) + ".", "",
             shown.rename_axis("Notebook").to_markdown(disable_numparse=True)]
    md_path = write_text(out_dir / "seeds.md", "\n".join(lines) + "\n")
    return md_path, csv_path
