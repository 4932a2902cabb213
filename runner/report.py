"""One report per sweep: ``sweep.csv`` / ``sweep.md`` (rows notebook x protocol x recipe: mean ± sd over the seeds
or folds) and the leak figure (``leak.png`` / ``leak.svg``: the study's reported test accuracy beside ours under the
study split and the grouped split, balanced accuracy beside). Records are read through ``runner.results.collect``
(``skinlib.outputs.read_records`` and ``headline``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from runner.execute import Outcome
from runner.grid import Task
from runner.results import collect, write_text
from skinlib import study

METRICS = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_auc", "test_melanoma_sensitivity")
KEYS = ("notebook", "protocol", "recipe")


def runs(tasks: Sequence[Task], outcomes: Sequence[Outcome]) -> pd.DataFrame:
    """One row per completed notebook run with a results row: its metrics (percent), protocol, recipe, seed, fold."""
    by_folder: dict[Path, list[int]] = {}
    for position, task in enumerate(tasks):
        by_folder.setdefault(task.folder, []).append(position)
    frames = []
    for folder, positions in by_folder.items():
        table = collect(folder, [outcomes[p] for p in positions], [tasks[p].step for p in positions])
        point = tasks[positions[0]].point
        frames.append(table[table["status"] == "ok"].assign(seed=point["seed"], fold=point["fold"],
                                                            folder=str(folder)))
    columns = [*KEYS, "seed", "fold", "folder", *METRICS]
    found = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return found[columns]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and 95 % t interval half-width over the runs of each notebook x protocol x recipe."""
    from scipy import stats

    grouped = table.groupby(list(KEYS), sort=False)[list(METRICS)]
    means, sds, counts = grouped.mean(), grouped.std(ddof=1), grouped.count()
    half = sds * stats.t.ppf(0.975, (counts - 1).clip(lower=1)) / np.sqrt(counts)
    result = means.add_suffix("_mean").join(sds.add_suffix("_sd")).join(half.add_suffix("_ci95"))
    result.insert(0, "runs", grouped.size())
    return result.reset_index()


def write(out_dir: Path, tasks: Sequence[Task], outcomes: Sequence[Outcome]) -> tuple[Path, Path, list[Path]]:
    """Writes ``sweep.csv``, ``sweep.md`` and (given training runs) ``leak.png`` / ``leak.svg``; their paths."""
    table = runs(tasks, outcomes)
    result = summary(table)
    csv_path = write_text(out_dir / "sweep.csv", result.to_csv(index=False))
    shown = result[[*KEYS, "runs"]].copy()
    for metric in METRICS:
        shown[metric.removeprefix("test_").replace("_", " ")] = [
            "—" if math.isnan(m) else (f"{m:.1f}" if math.isnan(s) else f"{m:.1f} ± {s:.1f}")
            for m, s in zip(result[f"{metric}_mean"], result[f"{metric}_sd"])]
    folds = sorted({t.point["folds"] for t in tasks if t.point.get("folds")})
    lines = ["# Sweep", "", f"{len(tasks)} notebook run(s): {sum(o.status == 'ok' for o in outcomes)} ok, "
             f"{sum(o.status == 'failed' for o in outcomes)} failed, {sum(o.status == 'skipped' for o in outcomes)} "
             "skipped.", "",
             "Test metrics in percent: mean ± standard deviation over the runs of each row (seeds"
             + (f", and the {folds[0]} folds of the grouped protocol" if folds else "") + "); `runs` counts them. "
             "Each run's own table: `<protocol>/<recipe>/seed<k>[/fold<j>]/results.md`.", "",
             shown.to_markdown(index=False, disable_numparse=True) if len(shown) else "No run completed.", ""]
    figures = leak_figure(result, out_dir) if len(result) else []
    if figures:
        lines += ["![The leak](leak.png)", ""]
    md_path = write_text(out_dir / "sweep.md", "\n".join(lines))
    return md_path, csv_path, figures


def leak_figure(result: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per notebook: the study's reported test accuracy, ours under the study split and under the grouped split
    (mean, 95 % interval over the runs), and balanced accuracy beside; PNG and SVG. Several recipes: the first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipe = result["recipe"].dropna().iloc[0] if result["recipe"].notna().any() else None
    rows = result[result["recipe"] == recipe] if recipe is not None else result
    notebooks = [s.notebook for s in study.STEPS if s.notebook in set(rows["notebook"])]
    if not notebooks:
        return []
    bars = [("the study's report", None, "#888888"), ("ours, study split", "study", "#d62728"),
            ("ours, grouped split", "grouped", "#1f77b4")]
    figure, axes = plt.subplots(2, 1, figsize=(max(7.5, 1.3 * len(notebooks) + 2), 8), sharex=True)
    x, width = np.arange(len(notebooks)), 0.27
    for axis, metric, title in ((axes[0], "test_accuracy", "Test accuracy"),
                                (axes[1], "test_balanced_accuracy", "Test balanced accuracy")):
        for offset, (label, protocol, colour) in zip((-width, 0, width), bars):
            if protocol is None:
                if metric != "test_accuracy":
                    continue  # the study reported no balanced accuracy
                values = [study.get(n).test_accuracy or np.nan for n in notebooks]
                errors = None
            else:
                picked = rows[rows["protocol"] == protocol].set_index("notebook").reindex(notebooks)
                values, errors = picked[f"{metric}_mean"].to_numpy(), picked[f"{metric}_ci95"].fillna(0).to_numpy()
            drawn = axis.bar(x + offset, values, width, yerr=errors, capsize=4, color=colour, label=label,
                             error_kw={"ecolor": "#333333", "elinewidth": 1.2})
            axis.bar_label(drawn, labels=["" if np.isnan(v) else f"{v:.0f}" for v in values], label_type="center",
                           color="white", fontsize=9, fontweight="bold")
        axis.set_xticks(x, [f"{n[:2]}\n{(study.get(n).model or 'ensemble').replace('_', ' ')}" for n in notebooks],
                        fontsize=9)
        axis.set_title(title, loc="left")
        axis.set_ylabel("percent")
        axis.grid(axis="y", alpha=0.3)
        axis.set_ylim(0, 100)
        axis.set_xlim(-0.6, len(notebooks) - 0.4)
    axes[0].legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, fontsize=9, frameon=False)
    figure.suptitle("What the lesion leak is worth" + (f" (recipe {recipe})" if recipe else "")
                    + ": mean and 95 % interval over seeds / folds")
    figure.tight_layout()
    paths = [out_dir / "leak.png", out_dir / "leak.svg"]
    for path in paths:
        figure.savefig(path, dpi=130)
    plt.close(figure)
    return paths
