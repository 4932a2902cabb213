"""One report per sweep: ``sweep.csv`` / ``sweep.md`` (rows notebook x protocol x recipe: mean ± sd over the seeds
or folds) and the leak figure (``leak.png`` / ``leak.svg``: the study's reported test accuracy beside ours under the
study split and the grouped split, balanced accuracy beside). Under cross-validation (``--folds K``) each seed's
folds are also pooled (``cv.csv``): every image predicted once, by the fold model that did not train on it, scored
together with lesion-level intervals (``skinlib.evaluate.report``); where the runs were also tested on ISIC 2018
(``--isic2018``), the fold models' mean probability there (the folds' ensemble) beside each fold model's score.
A parameter the sweep lists other than the recipe (``-p 'metadata=None|[...]'``) is a key too: a column, and a row
per value. The subgroup metrics of the runs' records are summarised over the runs (``runner.subgroup_report``).
Records are read through ``runner.results.collect`` (``skinlib.outputs.read_records`` and ``headline``),
predictions through ``skinlib.outputs.read_predictions``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from runner.execute import Outcome
from runner.grid import Task
from runner.results import collect, write_text
from runner.subgroup_report import listed_values, subgroup_lines
from skinlib import outputs, study

METRICS = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_auc", "test_melanoma_sensitivity")
KEYS = ("notebook", "protocol", "recipe")
POOLED = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy", "macro_f1": "macro_f1",
          "auc": "roc_auc_macro"}
"""The pooled out-of-fold columns (``oof_<name>``, percent, with ``_low`` / ``_high``): the Report's names."""
EXTERNAL = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy"}
"""The folds' ensemble on ISIC 2018 (``isic2018_ensemble_<name>`` with ``_low`` / ``_high``) and the fold models'
own scores there (``isic2018_fold_<name>_mean`` / ``_sd``), percent."""


def keys(tasks: Sequence[Task]) -> tuple[str, ...]:
    """The report's row keys: notebook, protocol, recipe and each parameter the sweep lists besides the recipe, so
    that runs of two values of it (image only and with metadata, say) are never pooled into one row."""
    names = [name for task in tasks for name in listed_values(task.point)]
    return (*KEYS, *dict.fromkeys(names))


def runs(tasks: Sequence[Task], outcomes: Sequence[Outcome]) -> pd.DataFrame:
    """One row per completed notebook run with a results row: its metrics (percent), protocol, recipe, each listed
    parameter's value, seed, fold."""
    by_folder: dict[Path, list[int]] = {}
    for position, task in enumerate(tasks):
        by_folder.setdefault(task.folder, []).append(position)
    frames = []
    for folder, positions in by_folder.items():
        table = collect(folder, [outcomes[p] for p in positions], [tasks[p].step for p in positions])
        point = tasks[positions[0]].point
        frames.append(table[table["status"] == "ok"].assign(**listed_values(point), seed=point["seed"],
                                                            fold=point["fold"], folder=str(folder)))
    columns = [*keys(tasks), "seed", "fold", "folder", *METRICS]
    found = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return found[columns]


def summary(table: pd.DataFrame, by: Sequence[str] = KEYS) -> pd.DataFrame:
    """Mean, standard deviation and 95 % t interval half-width over the runs of each notebook x protocol x recipe
    (x listed parameter: ``by``, :func:`keys`)."""
    from scipy import stats

    grouped = table.groupby(list(by), sort=False, dropna=False)[list(METRICS)]
    means, sds, counts = grouped.mean(), grouped.std(ddof=1), grouped.count()
    half = sds * stats.t.ppf(0.975, (counts - 1).clip(lower=1)) / np.sqrt(counts)
    result = means.add_suffix("_mean").join(sds.add_suffix("_sd")).join(half.add_suffix("_ci95"))
    result.insert(0, "runs", grouped.size())
    return result.reset_index()


def pooled(tasks: Sequence[Task], outcomes: Sequence[Outcome]) -> pd.DataFrame:
    """Per notebook x protocol x recipe x seed of a cross-validation whose folds all completed: the folds' test
    predictions pooled (each image exactly once) and scored with 95 % intervals resampling lesions; and, where every
    fold was tested on ISIC 2018, the folds' ensemble there (their mean probability) beside the fold models' mean
    ± sd."""
    from skinlib import evaluate
    from skinlib.classes import CLASSES

    folds: dict[tuple, list[Task]] = {}
    for task, outcome in zip(tasks, outcomes):
        if task.point.get("folds") and (task.step.model or task.step.members) and outcome.status == "ok":
            folds.setdefault((task.step.notebook, task.folder.parent, task.point["folds"]), []).append(task)
    rows = []
    for (notebook, parent, count), done in folds.items():
        if len(done) != count:
            continue  # a fold missing: nothing to pool
        frame = pd.concat([outputs.read_predictions(t.folder, t.step.number) for t in done], ignore_index=True)
        repeated = frame["image_id"][frame["image_id"].duplicated()]
        if len(repeated):
            raise ValueError(f"{parent}: image {repeated.iloc[0]} is in the test part of two folds of {notebook}; "
                             "the folds must partition the images")
        scored = evaluate.report(frame["label"].to_numpy(), frame[list(CLASSES)].to_numpy(),
                                 groups=frame["lesion_id"].to_numpy(), seed=0)
        parameters = outputs.read_record(done[0].folder, done[0].step.number).get("parameters") or {}
        row = {"notebook": notebook, "protocol": done[0].point["protocol"], "recipe": parameters.get("recipe"),
               "seed": done[0].point["seed"], "folds": count, "images": len(frame),
               "lesions": frame["lesion_id"].nunique(), **listed_values(done[0].point)}
        for column, name in POOLED.items():
            low, high = scored.intervals[name]
            row.update({f"oof_{column}": 100 * getattr(scored, name), f"oof_{column}_low": 100 * low,
                        f"oof_{column}_high": 100 * high})
        row.update(fold_ensemble(done))
        rows.append(row)
    columns = [*keys(tasks), "seed", "folds", "images", "lesions",
               *(f"oof_{c}{end}" for c in POOLED for end in ("", "_low", "_high")),
               *(f"isic2018_ensemble_{c}{end}" for c in EXTERNAL for end in ("", "_low", "_high")),
               *(f"isic2018_fold_{c}_{end}" for c in EXTERNAL for end in ("mean", "sd"))]
    return pd.DataFrame(rows, columns=columns)


def fold_ensemble(done: Sequence[Task]) -> dict[str, float]:
    """The fold models of one cross-validation on ISIC 2018: their mean probability per image scored (95 %
    intervals resampling lesions), and each model's own score as mean ± sd; {} unless every fold has its
    ISIC 2018 predictions."""
    from skinlib import evaluate
    from skinlib.classes import CLASSES

    try:
        tables = [outputs.read_predictions(t.folder, t.step.number, "isic2018").set_index("image_id") for t in done]
    except FileNotFoundError:  # a fold without --isic2018
        return {}
    first = tables[0]
    if any(not table.index.equals(first.index) for table in tables[1:]):
        raise ValueError(f"{done[0].folder.parent}: the folds' ISIC 2018 predictions are of different images; "
                         "run every fold with the same --isic2018 folder")
    records = [outputs.headline(outputs.read_record(t.folder, t.step.number)) for t in done]
    own = {name: [math.nan if r.get(f"isic2018_{name}") is None else 100 * r[f"isic2018_{name}"] for r in records]
           for name in EXTERNAL.values()}  # each fold model's own score, from its record
    mean = np.mean([t[list(CLASSES)].to_numpy() for t in tables], axis=0)
    scored = evaluate.report(first["label"].to_numpy(), mean, groups=first["lesion_id"].to_numpy(), seed=0)
    row = {}
    for column, name in EXTERNAL.items():
        low, high = scored.intervals[name]
        row.update({f"isic2018_ensemble_{column}": 100 * getattr(scored, name),
                    f"isic2018_ensemble_{column}_low": 100 * low, f"isic2018_ensemble_{column}_high": 100 * high,
                    f"isic2018_fold_{column}_mean": float(np.mean(own[name])),
                    f"isic2018_fold_{column}_sd": float(np.std(own[name], ddof=1)) if len(done) > 1 else math.nan})
    return row


def with_pooled(result: pd.DataFrame, cv: pd.DataFrame, by: Sequence[str] = KEYS) -> pd.DataFrame:
    """``result`` (:func:`summary`) with the pooled out-of-fold columns: the mean over seeds of each seed's pooled
    figure, and its interval where the row has one seed (``cv.csv`` has every seed's)."""
    if cv.empty:
        return result
    grouped = cv.groupby(list(by), sort=False, dropna=False)
    merged = grouped[[f"oof_{c}" for c in POOLED]].mean()
    single = grouped.size() == 1
    for column in POOLED:
        for end in ("_low", "_high"):
            merged[f"oof_{column}{end}"] = grouped[f"oof_{column}{end}"].first().where(single)
    return result.merge(merged.reset_index(), on=list(by), how="left")


def write(out_dir: Path, tasks: Sequence[Task], outcomes: Sequence[Outcome]) -> tuple[Path, Path, list[Path]]:
    """Writes ``sweep.csv``, ``sweep.md`` and (given training runs) ``leak.png`` / ``leak.svg``; their paths."""
    by = keys(tasks)
    table = runs(tasks, outcomes)
    cv = pooled(tasks, outcomes)
    result = with_pooled(summary(table, by), cv, by)
    csv_path = write_text(out_dir / "sweep.csv", result.to_csv(index=False))
    shown = result[[*by, "runs"]].copy()
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
    if len(cv):
        write_text(out_dir / "cv.csv", cv.to_csv(index=False))
        lines += ["## Cross-validation: the folds pooled", "",
                  "Each seed's fold models predict every image once (the fold that did not train on it); the "
                  "pooled predictions are scored together, with 95 % intervals resampling lesions. Beside: the mean "
                  "± sd of the folds' own test figures (above). Percent; all seeds in `cv.csv`.", "",
                  pooled_table(cv, result, by).to_markdown(index=False, disable_numparse=True), ""]
    lines += subgroup_lines(out_dir, tasks, outcomes, by)
    figures = leak_figure(result, out_dir, by[len(KEYS):]) if len(result) else []
    if figures:
        lines += ["![The leak](leak.png)", ""]
    md_path = write_text(out_dir / "sweep.md", "\n".join(lines))
    return md_path, csv_path, figures


def pooled_table(cv: pd.DataFrame, result: pd.DataFrame, by: Sequence[str] = KEYS) -> pd.DataFrame:
    """The markdown rows of the pooled out-of-fold section: per seed, pooled balanced accuracy and accuracy with
    their intervals, beside the fold mean ± sd of the row."""
    folds = result.set_index(list(by))
    shown = cv[[*by, "seed", "folds", "images", "lesions"]].copy()
    for column in ("balanced_accuracy", "accuracy"):
        shown[f"pooled {column.replace('_', ' ')}"] = [
            f"{v:.1f} [{lo:.1f}, {hi:.1f}]" for v, lo, hi in
            zip(cv[f"oof_{column}"], cv[f"oof_{column}_low"], cv[f"oof_{column}_high"])]
        mean, sd = (folds[f"test_{column}_{end}"].reindex(list(cv[list(by)].itertuples(index=False, name=None)))
                    for end in ("mean", "sd"))
        shown[f"fold {column.replace('_', ' ')} mean ± sd"] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(mean, sd)]
    if cv["isic2018_ensemble_balanced_accuracy"].notna().any():
        shown["ISIC 2018: folds' ensemble balanced accuracy"] = [
            "—" if math.isnan(v) else f"{v:.1f} [{lo:.1f}, {hi:.1f}]" for v, lo, hi in
            zip(cv["isic2018_ensemble_balanced_accuracy"], cv["isic2018_ensemble_balanced_accuracy_low"],
                cv["isic2018_ensemble_balanced_accuracy_high"])]
        shown["ISIC 2018: fold models' balanced accuracy mean ± sd"] = [
            "—" if math.isnan(m) else f"{m:.1f} ± {s:.1f}" for m, s in
            zip(cv["isic2018_fold_balanced_accuracy_mean"], cv["isic2018_fold_balanced_accuracy_sd"])]
    return shown


def figure_rows(result: pd.DataFrame, listed: Sequence[str] = ()) -> tuple[str | None, pd.DataFrame]:
    """The leak figure's recipe (the first in the sweep) and its rows: per notebook, that recipe's rows where the
    notebook ran under it, else those of the notebook's own first recipe (e.g. the smoke profile's 05-08 train
    under 'corrected'); the ensemble's rows, which name no recipe, too. Of each other listed parameter, the rows of
    its first value."""
    for name in listed:
        result = result[result[name] == result[name].iloc[0]]
    named = result.dropna(subset=["recipe"])
    recipe = named["recipe"].iloc[0] if len(named) else None
    chosen = {notebook: (recipe if recipe in set(group["recipe"]) else group["recipe"].iloc[0])
              for notebook, group in named.groupby("notebook", sort=False)}
    keep = result["recipe"].isna() | (result["recipe"] == result["notebook"].map(chosen))
    return recipe, result[keep]


def leak_figure(result: pd.DataFrame, out_dir: Path, listed: Sequence[str] = ()) -> list[Path]:
    """Per notebook: the study's reported test accuracy, ours under the study split and under the grouped split
    (mean, 95 % interval over the runs), and balanced accuracy beside; PNG and SVG. Several recipes: the first
    (:func:`figure_rows`); a notebook that ran under another only says which under its name. Another listed
    parameter: its first value, named in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipe, rows = figure_rows(result, listed)
    notebooks = [s.notebook for s in study.STEPS if s.notebook in set(rows["notebook"])]
    if not notebooks:
        return []
    own = rows.dropna(subset=["recipe"]).groupby("notebook")["recipe"].first()  # a notebook run under another
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
            inside = [not np.isnan(v) and v >= 8 for v in values]  # too short a bar: its figure goes above it
            axis.bar_label(drawn, labels=[f"{v:.0f}" if i else "" for v, i in zip(values, inside)],
                           label_type="center", color="white", fontsize=9, fontweight="bold")
            axis.bar_label(drawn, labels=["" if i or np.isnan(v) else f"{v:.0f}" for v, i in zip(values, inside)],
                           label_type="edge", padding=2, color="#333333", fontsize=9, fontweight="bold")
        axis.set_xticks(x, [f"{n[:2]}\n{(study.get(n).model or 'ensemble').replace('_', ' ')}"
                            + (f"\n(recipe {own[n]})" if own.get(n, recipe) != recipe else "") for n in notebooks],
                        fontsize=9)
        axis.set_title(title, loc="left")
        axis.set_ylabel("percent")
        axis.grid(axis="y", alpha=0.3)
        axis.set_ylim(0, 100)
        axis.set_xlim(-0.6, len(notebooks) - 0.4)
    axes[0].legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, fontsize=9, frameon=False)
    named = [f"recipe {recipe}"] * bool(recipe) + [f"{name}={rows[name].iloc[0]}" for name in listed]
    figure.suptitle("What the lesion leak is worth" + (f" ({', '.join(named)})" if named else "")
                    + ": mean and 95 % interval over seeds / folds")
    figure.tight_layout()
    paths = [out_dir / "leak.png", out_dir / "leak.svg"]
    for path in paths:
        figure.savefig(path, dpi=130)
    plt.close(figure)
    return paths
