"""The sweep report's subgroups: who each configuration fails, over all its runs.

Each training run's record keeps ``evaluate.subgroups(...).to_dict()`` (notebooks 02-08): per group of sex, age,
site and image source, the metrics with lesion-level intervals, and per attribute the best-to-worst gap of balanced
accuracy with its paired interval. Over the runs of one row of the report (notebook x protocol x recipe x each
other listed parameter), this gives:

* ``subgroups.csv``: per attribute and group, the runs that scored it, the mean test images, and each metric's mean
  and standard deviation over the runs (percent);
* ``subgroup_gaps.csv``: per attribute, the gap's mean and standard deviation over the runs, in how many runs its
  95 % lesion interval excludes 0, and the group that was worst most often;

and a section of ``sweep.md`` with both. A seed's interval says how sure one run is; the spread over the runs says
how much of a gap is the seed's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from runner.execute import Outcome
from runner.grid import Task
from runner.results import write_text
from skinlib import outputs

METRICS = {"balanced_accuracy": "balanced accuracy", "roc_auc_macro": "macro AUC",
           "melanoma_sensitivity": "melanoma sensitivity", "melanoma_specificity": "melanoma specificity"}
"""The per-group metrics of ``evaluate.subgroups`` and their names in ``sweep.md``."""


def listed_values(point: Mapping[str, Any]) -> dict[str, str]:
    """A sweep point's listed parameters other than the recipe, as text (``None``, ``['age', 'sex']``): the report's
    extra key columns."""
    return {name: value if isinstance(value, str) else repr(value)
            for _, name, value in point.get("listed", ()) if name != "recipe"}


def collect(tasks: Sequence[Task], outcomes: Sequence[Outcome], by: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every completed run's subgroup rows and gap rows (metrics in percent), with the report's keys ``by``, the
    seed and the fold; runs whose record keeps no subgroups (the ensemble, an older record) give none."""
    groups, gaps = [], []
    for task, outcome in zip(tasks, outcomes):
        folder = outputs.RunFolder(task.folder, task.step.number)
        if outcome.status != "ok" or not folder.record.is_file():
            continue
        record = outputs.read_record(task.folder, task.step.number)
        found = record.get("subgroups")
        if not found:
            continue
        key = {"notebook": task.step.notebook, "protocol": task.point["protocol"],
               "recipe": (record.get("parameters") or {}).get("recipe"), **listed_values(task.point),
               "seed": task.point["seed"], "fold": task.point["fold"]}
        groups += [{**key, **row} for row in found["table"]]
        gaps += [{**key, **row} for row in found["gaps"]]
    columns = [*by, "seed", "fold"]
    groups = pd.DataFrame(groups, columns=[*columns, "attribute", "group", "images", "lesions", *METRICS])
    gaps = pd.DataFrame(gaps, columns=[*columns, "attribute", "best", "worst", "gap", "gap_low", "gap_high"])
    for frame, names in ((groups, list(METRICS)), (gaps, ["gap", "gap_low", "gap_high"])):
        frame[names] = 100 * frame[names].astype(float)
    return groups, gaps


def summarise(groups: pd.DataFrame, gaps: pd.DataFrame, by: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group: runs, mean images, each metric's mean and sd over the runs. Per attribute: runs, the gap's mean and
    sd, the runs whose interval excludes 0, the most frequent worst group and how often it was worst."""
    grouped = groups.groupby([*by, "attribute", "group"], sort=False, dropna=False)
    per_group = grouped[list(METRICS)].mean().add_suffix("_mean").join(
        grouped[list(METRICS)].std(ddof=1).add_suffix("_sd"))
    per_group.insert(0, "images", grouped["images"].mean())
    per_group.insert(0, "runs", grouped.size())
    excludes = (gaps["gap_low"] > 0) | (gaps["gap_high"] < 0)
    grouped = gaps.assign(excludes_zero=excludes.astype(int)).groupby([*by, "attribute"], sort=False, dropna=False)
    per_gap = pd.DataFrame({"runs": grouped.size(), "gap_mean": grouped["gap"].mean(),
                            "gap_sd": grouped["gap"].std(ddof=1), "excludes_zero": grouped["excludes_zero"].sum(),
                            "worst_most_often": grouped["worst"].agg(lambda w: w.value_counts().index[0]),
                            "worst_times": grouped["worst"].agg(lambda w: int(w.value_counts().iloc[0]))})
    return per_group.reset_index(), per_gap.reset_index()


def _spread(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.1f}" if pd.isna(sd) else f"{mean:.1f} ± {sd:.1f}"


def subgroup_lines(out_dir: Path, tasks: Sequence[Task], outcomes: Sequence[Outcome], by: Sequence[str]) -> list[str]:
    """Writes ``subgroups.csv`` and ``subgroup_gaps.csv`` (where a run kept subgroups) and returns the markdown of
    ``sweep.md``'s subgroup section; [] without any."""
    groups, gaps = collect(tasks, outcomes, by)
    if groups.empty:
        return []
    per_group, per_gap = summarise(groups, gaps, by)
    write_text(out_dir / "subgroups.csv", per_group.to_csv(index=False))
    write_text(out_dir / "subgroup_gaps.csv", per_gap.to_csv(index=False))
    gap_rows = per_gap[[*by, "attribute", "runs"]].copy()
    gap_rows["gap in balanced accuracy"] = [_spread(m, s) for m, s in zip(per_gap["gap_mean"], per_gap["gap_sd"])]
    gap_rows["runs whose interval excludes 0"] = [f"{k} of {n}" for k, n in zip(per_gap["excludes_zero"],
                                                                              per_gap["runs"])]
    gap_rows["worst group most often"] = [f"{w} ({k} of {n})" for w, k, n in zip(
        per_gap["worst_most_often"], per_gap["worst_times"], per_gap["runs"])]
    group_rows = per_group[[*by, "attribute", "group", "runs"]].copy()
    group_rows["images"] = per_group["images"].map(lambda v: f"{v:.0f}")
    for metric, name in METRICS.items():
        group_rows[name] = [_spread(m, s) for m, s in zip(per_group[f"{metric}_mean"], per_group[f"{metric}_sd"])]
    return ["## Subgroups across runs", "",
            "Per attribute, the gap between the best and the worst group's balanced accuracy (groups named "
            "\"unknown\" left out): mean ± sd over the runs, in how many runs its 95 % lesion interval excludes 0, "
            "and the group worst most often. Then each group's test metrics, mean ± sd over the runs (percent; "
            "`images`: the mean test images of the group). All in `subgroups.csv` and `subgroup_gaps.csv`; each "
            "run's own intervals in its record (`results/<notebook>.json`, `subgroups`).", "",
            gap_rows.to_markdown(index=False, disable_numparse=True), "",
            group_rows.to_markdown(index=False, disable_numparse=True), ""]
