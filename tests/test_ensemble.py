"""skinlib.ensemble: averaging, weights fitted on validation only, paired comparison."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from skinlib import ensemble


def one_hot(labels, n=7):
    return np.eye(n)[labels]


def informative(y, accuracy, rng):
    """Probabilities that put 0.8 on the true class for a fraction ``accuracy`` of the images."""
    pred = np.where(rng.random(len(y)) < accuracy, y, (y + rng.integers(1, 7, len(y))) % 7)
    return one_hot(pred) * 0.8 + 0.2 / 7


def test_average_is_the_weighted_mean():
    a, b = one_hot([0, 1]), one_hot([1, 1])
    np.testing.assert_allclose(ensemble.average([a, b]), (a + b) / 2)
    np.testing.assert_allclose(ensemble.average({"a": a, "b": b}, {"a": 3, "b": 1}), 0.75 * a + 0.25 * b)
    np.testing.assert_allclose(ensemble.average([a, b], [1, 0]), a)
    with pytest.raises(ValueError, match="same shape"):
        ensemble.average([a, one_hot([1, 1, 1])])
    with pytest.raises(ValueError, match="one weight per model"):
        ensemble.average([a, b], [1, 2, 3])
    with pytest.raises(ValueError, match="keyed"):
        ensemble.average({"a": a, "b": b}, {"a": 1, "c": 1})


def test_weights_come_from_the_validation_set_only():
    rng = np.random.default_rng(0)
    y_val, y_test = rng.integers(0, 7, 400), rng.integers(0, 7, 400)
    # "good_on_val" is accurate on validation but not on test; "good_on_test" the reverse.
    val = {"good_on_val": informative(y_val, 0.9, rng), "good_on_test": informative(y_val, 0.3, rng)}
    test = {"good_on_val": informative(y_test, 0.3, rng), "good_on_test": informative(y_test, 0.9, rng)}
    weights = ensemble.fit_weights(val, y_val)
    assert set(weights) == set(val) and sum(weights.values()) == pytest.approx(1.0)
    assert weights["good_on_val"] > 0.8  # what validation says, whatever the test set would prefer
    assert ensemble.fit_weights(test, y_test)["good_on_test"] > 0.8
    # the weights do minimise the validation log loss
    def val_loss(w):
        mixed = ensemble.average(val, {"good_on_val": w, "good_on_test": 1 - w})
        return -np.log(mixed[np.arange(len(y_val)), y_val]).mean()
    best = min(np.linspace(0, 1, 101), key=val_loss)
    assert weights["good_on_val"] == pytest.approx(best, abs=0.02)
    sequence_weights = ensemble.fit_weights(list(val.values()), y_val)
    assert isinstance(sequence_weights, np.ndarray) and sequence_weights[0] == pytest.approx(weights["good_on_val"])


def test_mcnemar_against_hand_computation():
    y = np.zeros(20, dtype=int)
    a = np.array([0] * 10 + [1] * 2 + [0] * 8)   # right on 0-9 and 12-19
    b = np.array([1] * 10 + [0] * 2 + [0] * 8)   # right on 10-19
    exact = ensemble.mcnemar(y, a, b)
    assert (exact["b"], exact["c"]) == (10, 2)
    assert exact["p_value"] == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue)
    assert exact["p_value"] == pytest.approx(0.03857, abs=1e-4)
    chi2 = ensemble.mcnemar(y, a, b, exact=False)
    assert chi2["statistic"] == pytest.approx((10 - 2 - 1) ** 2 / 12)
    assert chi2["p_value"] == pytest.approx(0.0433, abs=1e-3)
    assert ensemble.mcnemar(y, a, a)["p_value"] == 1.0


def test_compare_tells_a_real_gain_from_noise():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 600)
    members = {name: informative(y, 0.6, rng) for name in ("m1", "m2", "m3")}
    probas = {**members, "ensemble": ensemble.average(members)}
    table = ensemble.compare(y, probas)
    assert table.attrs["reference"] == "ensemble"
    assert list(table.index) == ["m1", "m2", "m3", "ensemble"]
    for name in members:
        row = table.loc[name]
        assert row["accuracy_gain"] == pytest.approx(table.loc["ensemble", "accuracy"] - row["accuracy"])
        assert row["accuracy_gain_low"] <= row["accuracy_gain"] <= row["accuracy_gain_high"]
        assert row["accuracy_gain_low"] > 0 and row["mcnemar_p"] < 0.001 and row["significant"]
    # a copy of a member with 2 flipped predictions is not significantly different
    copy = members["m1"].copy()
    copy[:2] = copy[:2][:, ::-1]
    same = ensemble.compare(y, {"m1": members["m1"], "copy": copy}, reference="m1")
    assert not same.loc["copy", "significant"] and same.loc["copy", "mcnemar_p"] > 0.2
    with pytest.raises(ValueError, match="reference"):
        ensemble.compare(y, probas, reference="nope")


def test_clustered_mcnemar_counts_lesions_not_images():
    # 20 lesions of 3 images each; the discordant images come in whole lesions
    lesions = np.repeat(np.arange(20), 3)
    y = np.zeros(60, dtype=int)
    a = np.zeros(60, dtype=int)  # always right
    b = np.where(lesions < 12, 1, 0)  # wrong on lesions 0-11 ...
    a[(lesions >= 12) & (lesions < 16)] = 1  # ... and a wrong on lesions 12-15
    plain, chi2 = ensemble.mcnemar(y, a, b), ensemble.mcnemar(y, a, b, exact=False)
    clustered = ensemble.mcnemar(y, a, b, groups=lesions)
    assert (clustered["b"], clustered["c"]) == (plain["b"], plain["c"]) == (36, 12)
    # Obuchowski / Yang: (sum of b_k - c_k)^2 / sum of (b_k - c_k)^2 = (12*3 - 4*3)^2 / (16 * 9) = 4
    assert clustered["statistic"] == pytest.approx(4.0)
    assert clustered["p_value"] == pytest.approx(stats.chi2.sf(4.0, 1))
    assert clustered["p_value"] > 0.04 > 0.01 > chi2["p_value"] > plain["p_value"]
    assert clustered["test"] == ensemble.CLUSTERED_MCNEMAR and plain["test"] == "exact"
    # one image per lesion: the uncorrected McNemar statistic
    singles = ensemble.mcnemar(y, a, b, groups=np.arange(60))
    assert singles["statistic"] == pytest.approx((36 - 12) ** 2 / 48)
    with pytest.warns(UserWarning, match="on 0 discordant group"):
        assert ensemble.mcnemar(y, a, a, groups=lesions)["p_value"] == 1.0


def test_compare_over_lesions():
    rng = np.random.default_rng(2)
    n_lesions, per_lesion = 250, 3
    lesions = np.repeat(np.arange(n_lesions), per_lesion)
    y_lesion = rng.integers(0, 7, n_lesions)
    # each model is right or wrong about a whole lesion (all its images)
    members = {name: informative(y_lesion, accuracy, rng)[lesions] for name, accuracy in (("m1", 0.6), ("m2", 0.7))}
    members["twin"] = members["m1"].copy()
    y = y_lesion[lesions]
    by_image = ensemble.compare(y, members, reference="m1")
    with pytest.warns(UserWarning, match="on 0 discordant group"):  # the twin
        by_lesion = ensemble.compare(y, members, reference="m1", groups=lesions)
    assert by_lesion.attrs == {"reference": "m1", "interval_unit": "lesion", "n_groups": n_lesions,
                               "mcnemar_test": ensemble.CLUSTERED_MCNEMAR,
                               "adjustment": "Holm over every model and both metrics (accuracy, balanced accuracy)"}
    assert by_image.attrs["interval_unit"] == "image" and by_image.attrs["n_groups"] == len(y)
    row_image, row_lesion = by_image.loc["m2"], by_lesion.loc["m2"]
    assert row_lesion["accuracy_gain"] == row_image["accuracy_gain"]
    image_width = row_image["accuracy_gain_high"] - row_image["accuracy_gain_low"]
    lesion_width = row_lesion["accuracy_gain_high"] - row_lesion["accuracy_gain_low"]
    assert 1.4 < lesion_width / image_width < 2.1  # sqrt(3) wider
    assert row_lesion["mcnemar_p"] > row_image["mcnemar_p"]
    twin = by_lesion.loc["twin"]
    assert (twin["accuracy_gain_low"], twin["accuracy_gain_high"]) == (0.0, 0.0) and not twin["significant"]
    assert (twin["balanced_accuracy_gain_low"], twin["balanced_accuracy_gain_high"]) == (0.0, 0.0)


def test_clustered_mcnemar_statistics_on_a_hand_computed_toy():
    # 12 lesions; b_k, c_k (images only a / only b right) and n_k (images) per lesion:
    #   lesions 0-4: b=2, c=0, n=4;  5-7: b=1, c=0, n=1;  8-9: b=0, c=1, n=2;  10: b=1, c=1, n=3;  11: b=0, c=0, n=2
    sizes = [4] * 5 + [1] * 3 + [2] * 2 + [3, 2]
    only_a = [2] * 5 + [1] * 3 + [0, 0] + [1, 0]
    only_b = [0] * 5 + [0] * 3 + [1, 1] + [1, 0]
    lesions, y, a, b = [], [], [], []
    for k, (n, ka, kb) in enumerate(zip(sizes, only_a, only_b)):
        lesions += [k] * n
        y += [0] * n
        a += [0] * ka + [1] * kb + [0] * (n - ka - kb)  # right, wrong, right (both right)
        b += [1] * ka + [0] * kb + [0] * (n - ka - kb)
    y, a, b = np.array(y), np.array(a), np.array(b)
    # d_k = b_k - c_k: 2 (x5), 1 (x3), -1 (x2), 0, 0. Obuchowski/Yang: (10 + 3 - 2)^2 / (5*4 + 3 + 2) = 121 / 25
    obuchowski = ensemble.mcnemar(y, a, b, groups=lesions)
    assert (obuchowski["b"], obuchowski["c"], obuchowski["discordant_groups"]) == (14, 3, 11)
    assert obuchowski["statistic"] == pytest.approx(121 / 25)
    assert obuchowski["test"] == ensemble.CLUSTERED_MCNEMAR and "Obuchowski 1998" in obuchowski["test"]
    # Durkalski: d_k / n_k = 0.5 (x5), 1 (x3), -0.5 (x2), 0, 0: (2.5 + 3 - 1)^2 / (5*0.25 + 3 + 2*0.25) = 20.25/4.75
    durkalski = ensemble.mcnemar(y, a, b, groups=lesions, clustered="durkalski")
    assert durkalski["statistic"] == pytest.approx(20.25 / 4.75)
    assert durkalski["p_value"] == pytest.approx(stats.chi2.sf(20.25 / 4.75, df=1))
    assert durkalski["test"] == ensemble.DURKALSKI_MCNEMAR
    with pytest.raises(ValueError, match="clustered='eliasziw': accepted are obuchowski, durkalski"):
        ensemble.mcnemar(y, a, b, groups=lesions, clustered="eliasziw")


def test_few_discordant_lesions_warn_with_the_count():
    lesions = np.repeat(np.arange(30), 2)
    y = np.zeros(60, dtype=int)
    b = np.where(lesions < 4, 1, 0)  # b wrong on 4 lesions only
    with pytest.warns(UserWarning, match=r"on 4 discordant group\(s\).*fewer than 10"):
        ensemble.mcnemar(y, np.zeros(60, dtype=int), b, groups=lesions)


def test_holm_against_hand_computation():
    # sorted 0.01, 0.03, 0.04 -> 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    np.testing.assert_allclose(ensemble.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(ensemble.holm([0.5, np.nan, 0.6]), [1.0, np.nan, 1.0])
    assert ensemble.holm([]).shape == (0,)


def test_compare_adjusts_three_members_with_holm_on_both_metrics():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 400)
    members = {"strong": informative(y, 0.45, rng), "close": informative(y, 0.55, rng),
               "twin": None}
    reference = informative(y, 0.6, rng)
    members["twin"] = reference.copy()
    table = ensemble.compare(y, {"reference": reference, **members}, reference="reference", n_bootstrap=400)
    compared = ["strong", "close", "twin"]
    raw = table.loc[compared, ["accuracy_gain_p", "balanced_accuracy_gain_p"]].to_numpy().ravel()
    adjusted = table.loc[compared, ["accuracy_gain_p_holm", "balanced_accuracy_gain_p_holm"]].to_numpy().ravel()
    np.testing.assert_allclose(adjusted, ensemble.holm(raw))
    assert (adjusted >= raw).all() and table.loc["twin", "accuracy_gain_p"] == 1.0
    assert table.loc["strong", "accuracy_gain_p"] == pytest.approx(2 / 401)  # no resample at or below 0
    for name in compared:
        row = table.loc[name]
        assert row["significant"] == (row["significant_accuracy"] or row["significant_balanced_accuracy"])
        assert row["significant_balanced_accuracy"] == (row["balanced_accuracy_gain_p_holm"] < 0.05)
    assert table.loc["strong", "significant"] and not table.loc["twin", "significant"]
    assert pd.isna(table.loc["reference", "significant"])
