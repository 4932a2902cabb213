"""evaluate.subgroups: per-group metrics against scikit-learn, lesion-level intervals, the paired gap."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn import metrics

from skinlib import evaluate, figures
from skinlib.subgroups import Subgroups, group_labels

N_BOOT = 200


def predictions(n: int, seed: int = 0, skill: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    proba = rng.dirichlet(np.ones(7), n)
    proba[np.arange(n), y] += skill * rng.random(n)
    return y, proba / proba.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def case():
    n = 500
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "lesion_id": [f"HAM_{i // 2:04d}" for i in range(n)],
        "sex": rng.choice(["male", "female", "unknown"], n, p=[0.5, 0.45, 0.05]),
        "age": rng.choice([np.nan, 0.0, 15.0, 30.0, 45.0, 59.0, 60.0, 85.0], n),
        "localization": rng.choice(["back", "face", "ear", "trunk"], n, p=[0.5, 0.35, 0.05, 0.1]),
        "dataset": rng.choice(["rosendahl", "vidir_modern"], n),
    })
    y, proba = predictions(n)
    return frame, y, proba, evaluate.subgroups(y, proba, frame, n_bootstrap=N_BOOT)


def test_group_counts_and_metrics_match_sklearn_on_each_group(case):
    frame, y, proba, result = case
    assert list(dict.fromkeys(result.table["attribute"])) == ["sex", "age_60", "age_band", "site", "source"]
    for row in result.table.itertuples():
        mask = (group_labels(frame, row.attribute) == row.group).to_numpy()
        assert row.images == mask.sum() and row.lesions == frame.loc[mask, "lesion_id"].nunique()
        y_group, p_group = y[mask], proba[mask]
        pred = p_group.argmax(axis=1)
        assert row.balanced_accuracy == pytest.approx(metrics.balanced_accuracy_score(y_group, pred))
        present = [k for k in range(7) if 0 < (y_group == k).sum() < len(y_group)]
        assert row.roc_auc_macro == pytest.approx(
            np.mean([metrics.roc_auc_score(y_group == k, p_group[:, k]) for k in present]))
        assert row.melanoma_sensitivity == pytest.approx(metrics.recall_score(y_group == 4, pred == 4))
        assert row.melanoma_specificity == pytest.approx(metrics.recall_score(y_group != 4, pred != 4))
        for metric in ("balanced_accuracy", "roc_auc_macro", "melanoma_specificity"):
            assert getattr(row, f"{metric}_low") <= getattr(row, metric) <= getattr(row, f"{metric}_high")
    images = result.table.groupby("attribute")["images"].sum()
    assert (images == len(frame)).all()


def test_age_bands_sites_pooled_and_unknowns(case):
    frame, *_ = case
    ages = group_labels(frame, "age_band")
    assert set(ages) == {"0-19", "20-39", "40-59", "60-79", "80-99", "unknown"}
    assert set(ages[frame["age"] == 59.0]) == {"40-59"} and set(ages[frame["age"] == 60.0]) == {"60-79"}
    split_60 = group_labels(frame, "age_60")
    assert set(split_60[frame["age"] == 59.0]) == {"<60"} and set(split_60[frame["age"] == 60.0]) == {">=60"}
    assert set(split_60[frame["age"].isna()]) == {"unknown"}
    sites = group_labels(frame, "site", min_site_images=50)
    ear = (frame["localization"] == "ear").sum()
    assert ear < 50 and (sites == "other").sum() == ear
    assert "ear" in set(group_labels(frame, "site", min_site_images=1))


def test_intervals_widen_when_photos_repeat_a_lesion():
    y, proba = predictions(300, seed=2, skill=0.6)
    twice_y, twice_p = np.r_[y, y], np.r_[proba, proba]
    frame = pd.DataFrame({"sex": "female"}, index=range(600))
    one_lesion = frame.assign(lesion_id=[f"L{i % 300}" for i in range(600)])
    distinct = frame.assign(lesion_id=[f"L{i}" for i in range(600)])
    same = evaluate.subgroups(twice_y, twice_p, one_lesion, by="sex", n_bootstrap=N_BOOT).table.iloc[0]
    apart = evaluate.subgroups(twice_y, twice_p, distinct, by="sex", n_bootstrap=N_BOOT).table.iloc[0]
    assert same.balanced_accuracy == apart.balanced_accuracy and (same.lesions, apart.lesions) == (300, 600)
    for metric in ("balanced_accuracy", "roc_auc_macro"):
        width = {name: row[f"{metric}_high"] - row[f"{metric}_low"] for name, row in (("same", same), ("apart", apart))}
        assert width["same"] > 1.2 * width["apart"]


def test_gap_is_best_minus_worst_with_a_paired_interval():
    y, proba = predictions(400, seed=3, skill=3.0)
    frame = pd.DataFrame({"lesion_id": [f"L{i // 2}" for i in range(400)],
                          "sex": np.repeat(["female", "male"], 200)})
    wrong = np.arange(200, 400)[::2]  # half the men's images: the probabilities of another class
    proba[wrong] = np.roll(proba[wrong], 1, axis=1)
    result = evaluate.subgroups(y, proba, frame, by=["sex"], n_bootstrap=N_BOOT)
    gap = result.gaps.iloc[0]
    pred = proba.argmax(axis=1)
    expected = (metrics.balanced_accuracy_score(y[:200], pred[:200])
                - metrics.balanced_accuracy_score(y[200:], pred[200:]))
    assert (gap.best, gap.worst) == ("female", "male")
    assert gap.gap == pytest.approx(expected) and expected > 0.3
    assert 0 < gap.gap_low < gap.gap < gap.gap_high


def test_unknown_group_is_left_out_of_the_gap(case):
    _, _, _, result = case
    assert "unknown" not in set(result.gaps["best"]) | set(result.gaps["worst"])
    assert list(result.gaps["attribute"]) == ["sex", "age_60", "age_band", "site", "source"]


def test_no_dataset_column_skips_the_source_with_a_note(case):
    frame, y, proba, _ = case
    kaggle = frame.drop(columns="dataset")
    with pytest.warns(UserWarning, match="dataset"):
        result = evaluate.subgroups(y, proba, kaggle, by=("sex", "source"), n_bootstrap=20)
    assert "source" not in set(result.table["attribute"]) and "source" not in set(result.gaps["attribute"])
    assert any("image source" in note for note in result.notes)
    default = evaluate.subgroups(y, proba, kaggle, n_bootstrap=20)
    assert "source" not in set(default.table["attribute"]) and any("`dataset`" in n for n in default.notes)


def test_bad_input_is_refused_with_the_parameter_named(case):
    frame, y, proba, _ = case
    with pytest.raises(ValueError, match=r"by=.*'gender'.*accepted: sex, age_60"):
        evaluate.subgroups(y, proba, frame, by=["gender"])
    with pytest.raises(ValueError, match="groups='patient'"):
        evaluate.subgroups(y, proba, frame, groups="patient")
    with pytest.raises(ValueError, match="frame has 10 rows"):
        evaluate.subgroups(y, proba, frame.head(10))


def test_result_is_json_and_round_trips(case):
    *_, result = case
    text = json.dumps(result.to_dict(), allow_nan=False)
    again = Subgroups.from_dict(json.loads(text))
    pd.testing.assert_frame_equal(again.table, result.table, check_dtype=False)
    pd.testing.assert_frame_equal(again.gaps, result.gaps, check_dtype=False)


def test_figure_has_a_panel_per_attribute(case):
    *_, result = case
    figure = figures.subgroup_metrics(result, "melanoma_sensitivity")
    assert isinstance(figure, Figure) and len(figure.axes) == 5
    with pytest.raises(ValueError, match="metric='accuracy'"):
        figures.subgroup_metrics(result, "accuracy")
