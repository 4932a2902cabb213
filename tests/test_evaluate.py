"""skinlib.evaluate, skinlib.bootstrap, skinlib.calibration and skinlib.figures: hand-computed metrics,
cluster bootstrap intervals, TTA."""

import contextlib
import json
import math

import keras
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn import metrics
from sklearn.metrics import balanced_accuracy_score

from skinlib import CLASSES, bootstrap, calibration, evaluate, figures

# 20 images, every class present: akiec 2, bcc 1, bkl 1, df 1, mel 3, nv 10, vasc 2
COUNTS = np.array([2, 1, 1, 1, 3, 10, 2])
Y = np.repeat(np.arange(7), COUNTS)
MEL, NV = CLASSES.index("mel"), CLASSES.index("nv")


def one_hot(labels, n=7):
    return np.eye(n)[labels]


def test_perfect_classifier():
    result = evaluate.report(Y, one_hot(Y))
    assert result.accuracy == result.balanced_accuracy == result.macro_f1 == 1.0
    assert result.roc_auc_macro == 1.0
    assert result.log_loss == pytest.approx(0.0, abs=1e-9)
    assert result.ece == pytest.approx(0.0)
    assert result.melanoma_sensitivity == result.melanoma_specificity == 1.0
    assert result.intervals["accuracy"] == (1.0, 1.0)
    assert result.intervals["macro_f1"] == result.intervals["roc_auc_macro"] == (1.0, 1.0)
    np.testing.assert_array_equal(result.confusion, np.diag(COUNTS))
    np.testing.assert_array_equal(result.per_class["support"], COUNTS)
    assert result.notes == [evaluate.IMAGE_INTERVALS_NOTE]  # no lesion ids: images were resampled
    assert not evaluate.report(Y, one_hot(Y), groups=np.arange(20) // 2).notes


def test_inverted_classifier():
    # All probability on the wrong classes: the true class always gets the lowest score.
    proba = (1.0 - one_hot(Y)) / 6.0
    result = evaluate.report(Y, proba)
    assert result.accuracy == 0.0 and result.balanced_accuracy == 0.0 and result.macro_f1 == 0.0
    assert result.roc_auc_macro == 0.0
    assert (result.per_class["roc_auc"] == 0.0).all()
    assert result.log_loss > 10  # the true class has probability 0 (clipped)
    assert result.melanoma_sensitivity == 0.0


def test_constant_uniform_classifier():
    # Uniform probabilities: argmax is always class 0 ("akiec"), every AUC is 0.5, log loss is log 7.
    result = evaluate.report(Y, np.full((len(Y), 7), 1 / 7))
    assert result.accuracy == pytest.approx(2 / 20)
    assert result.balanced_accuracy == pytest.approx(1 / 7)
    precision = 2 / 20
    assert result.macro_f1 == pytest.approx(2 * precision / (precision + 1) / 7)
    assert result.roc_auc_macro == pytest.approx(0.5)
    assert result.log_loss == pytest.approx(math.log(7))
    assert result.ece == pytest.approx(abs(2 / 20 - 1 / 7))
    assert result.melanoma_sensitivity == 0.0 and result.melanoma_specificity == 1.0
    np.testing.assert_array_equal(result.confusion[:, 0], COUNTS)


def test_always_nevus_classifier_hides_behind_accuracy():
    prior = COUNTS / COUNTS.sum()
    result = evaluate.report(Y, np.tile(prior, (len(Y), 1)))
    assert result.accuracy == pytest.approx(0.5)  # the study's metric looks fine...
    assert result.balanced_accuracy == pytest.approx(1 / 7)  # ...the ISIC metric does not
    assert result.log_loss == pytest.approx(-(prior * np.log(prior)).sum())
    assert result.per_class.loc["nv", "recall"] == 1.0 and result.per_class.loc["mel", "recall"] == 0.0
    assert math.isnan(result.per_class.loc["mel", "precision"])  # never predicted


def test_string_labels_are_accepted():
    codes = [CLASSES[k] for k in Y]
    assert evaluate.report(codes, one_hot(Y)).accuracy == 1.0
    with pytest.raises(ValueError, match="unknown class codes"):
        evaluate.report(["mel", "melanoma"], one_hot([4, 4]))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="columns"):
        evaluate.report(Y, np.ones((20, 5)) / 5)
    with pytest.raises(ValueError, match="y_true"):
        evaluate.report(Y[:5], one_hot(Y))


def noisy_predictions(n, accuracy, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    pred = np.where(rng.random(n) < accuracy, y, (y + rng.integers(1, 7, n)) % 7)
    return y, one_hot(pred) * 0.9 + 0.1 / 7


def test_bootstrap_interval_contains_estimate_and_shrinks():
    widths = {}
    names = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro")
    for n in (200, 2000):
        y, proba = noisy_predictions(n, 0.7, seed=n)
        result = evaluate.report(y, proba, seed=1)
        for name in names:
            low, high = result.intervals[name]
            assert low <= getattr(result, name) <= high
            widths[n, name] = high - low
    for name in names:
        assert widths[2000, name] < widths[200, name] / 2  # ~ 1/sqrt(n): 3.2 times narrower
    # about +-2 points at the study's 1,002 test images
    y, proba = noisy_predictions(1002, 0.8, seed=0)
    low, high = evaluate.report(y, proba).intervals["accuracy"]
    assert 0.03 < high - low < 0.07


def test_bootstrap_is_seeded():
    y, proba = noisy_predictions(300, 0.6, seed=3)
    lesions = np.arange(300) // 3
    for groups in (None, lesions):
        first = evaluate.report(y, proba, groups=groups, seed=5).intervals
        assert first == evaluate.report(y, proba, groups=groups, seed=5).intervals
        assert first != evaluate.report(y, proba, groups=groups, seed=6).intervals


def test_vectorised_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 5, 50), rng.integers(0, 7, 50)  # classes 5, 6 only predicted
    with pytest.warns(UserWarning):
        expected = balanced_accuracy_score(y, pred)
    assert bootstrap.balanced_accuracy(y, pred) == pytest.approx(expected)


def lesion_data(n_lesions, images_per_lesion, seed=0):
    """Labels, probabilities and lesion ids where every image of a lesion shares label and prediction."""
    y, proba = noisy_predictions(n_lesions, 0.75, seed)
    rows = np.repeat(np.arange(n_lesions), images_per_lesion)
    return y[rows], proba[rows], np.array([f"HAM_{k:07d}" for k in rows])


def random_probabilities(n, seed, n_classes=7):
    """Labels and probabilities rounded to 2 decimals (ties, as real probabilities have)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    proba = rng.dirichlet(np.ones(7), n)
    proba[np.arange(n), y] += rng.uniform(0, 0.5, n)
    return y, np.round(proba / proba.sum(axis=1, keepdims=True), 2)


def sklearn_metrics(y, proba):
    pred = proba.argmax(axis=1)
    with pytest.warns(UserWarning) if not set(pred) <= set(y) else contextlib.nullcontext():
        balanced = balanced_accuracy_score(y, pred)
    return [metrics.accuracy_score(y, pred), balanced,
            metrics.f1_score(y, pred, average="macro", zero_division=0),
            np.mean([metrics.roc_auc_score(y == k, proba[:, k]) for k in np.unique(y)])]


def vectorised_metrics(y, proba, weights=None):
    pred = proba.argmax(axis=1)
    return [bootstrap.accuracy(y, pred, weights), bootstrap.balanced_accuracy(y, pred, weights),
            bootstrap.macro_f1(y, pred, weights), bootstrap.macro_roc_auc(y, proba, weights)]


@pytest.mark.parametrize("n_classes", [7, 5])  # 5: classes 5 and 6 only ever predicted
def test_vectorised_metrics_equal_scikit_learn(n_classes):
    y, proba = random_probabilities(300, seed=1, n_classes=n_classes)
    np.testing.assert_allclose(vectorised_metrics(y, proba), sklearn_metrics(y, proba), rtol=1e-12)
    # integer weights are the rows repeated that many times (a class may vanish from a resample)
    weights = np.random.default_rng(2).poisson(1.0, (4, 300))
    weights[0, y == 2] = 0
    by_weights = np.stack(vectorised_metrics(y, proba, weights), axis=1)
    for row, w in zip(by_weights, weights):
        rows = np.repeat(np.arange(300), w)
        np.testing.assert_allclose(row, sklearn_metrics(y[rows], proba[rows]), rtol=1e-12)


def width(interval):
    return interval[1] - interval[0]


def test_cluster_bootstrap_is_wider_when_lesions_repeat():
    y, proba, lesions = lesion_data(300, 3)
    by_lesion = evaluate.report(y, proba, groups=lesions)
    by_image = evaluate.report(y, proba)
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro"):
        # 3 identical images per lesion: the effective sample is 300, not 900 (sqrt(3) = 1.73 times wider)
        assert 1.4 < width(by_lesion.intervals[name]) / width(by_image.intervals[name]) < 2.1, name
        low, high = by_lesion.intervals[name]
        assert low <= getattr(by_lesion, name) <= high


def test_cluster_bootstrap_of_single_image_lesions_is_the_image_bootstrap():
    y, proba = noisy_predictions(500, 0.7, seed=4)
    ids = np.random.default_rng(0).permutation(500).astype(str)  # one image per lesion, ids in any order
    assert evaluate.report(y, proba, groups=ids).intervals == evaluate.report(y, proba).intervals
    pred = proba.argmax(axis=1)
    assert (bootstrap.bootstrap_interval(bootstrap.macro_f1, y, pred, groups=ids, seed=3)
            == bootstrap.bootstrap_interval(bootstrap.macro_f1, y, pred, seed=3))


def test_resampled_counts_draw_whole_lesions():
    codes = np.array([0, 0, 0, 1, 2, 2])  # lesions of 3, 1 and 2 images
    for counts in bootstrap.resample_weights(codes, 3, n_resamples=50, seed=0):
        assert counts.shape == (50, 6)
        assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 4] == counts[:, 5]).all()
        lesions_drawn = counts[:, 0] + counts[:, 3] + counts[:, 4]
        assert (lesions_drawn == 3).all()  # as many lesions as there are
    assert bootstrap.group_codes(["b", "a", "b", "c"], 4)[1] == 3
    with pytest.raises(ValueError, match="missing"):
        bootstrap.group_codes(["a", None], 2)
    with pytest.raises(ValueError, match="one id per row"):
        bootstrap.group_codes(np.arange(5), 20)
    with pytest.raises(ValueError, match="one id per row"):
        evaluate.report(Y, one_hot(Y), groups=np.arange(5))


def test_paired_difference_of_identical_models_is_zero():
    y, proba, lesions = lesion_data(200, 2)
    pred = proba.argmax(axis=1)
    gain = bootstrap.paired_difference(bootstrap.accuracy)
    assert bootstrap.bootstrap_interval(gain, y, pred, pred, groups=lesions) == (0.0, 0.0)
    # 2 of 200 lesions changed: a narrow interval; unpaired resamples would be as wide as accuracy's (~0.12)
    other = pred.copy()
    other[:4] = (other[:4] + 1) % 7
    accuracy_width = width(bootstrap.bootstrap_interval(bootstrap.accuracy, y, pred, groups=lesions))
    assert width(bootstrap.bootstrap_interval(gain, y, pred, other, groups=lesions)) < accuracy_width / 3


def test_undefined_resamples_are_left_out():
    # 2 melanomas among 10 lesions: some resamples draw none, where that class's AUC is undefined
    y = np.array([MEL, MEL] + [NV] * 8)
    proba = one_hot(np.array([MEL, NV] + [NV] * 7 + [MEL])) * 0.8 + 0.2 / 7
    auc = bootstrap.bootstrap_interval(bootstrap.roc_auc, proba[:, MEL], y == MEL, n_resamples=200)
    assert not np.isnan(auc).any() and auc[0] < auc[1]
    assert all(math.isnan(v) for v in bootstrap.bootstrap_interval(bootstrap.accuracy, y[:1], y[:1]))
    assert all(math.isnan(v) for v in bootstrap.bootstrap_interval(bootstrap.accuracy, y, y, groups=[1] * 10))


def test_report_records_the_resampled_unit(tmp_path):
    y, proba, lesions = lesion_data(250, 4)
    lesions[::2] = [f"single_{k}" for k in range(len(lesions[::2]))]  # 500 single-image lesions, 250 pairs
    result = evaluate.report(y, proba, groups=lesions)
    assert (result.n, result.n_groups, result.interval_unit) == (1000, 750, "lesion")
    assert "95 % intervals over 750 lesions (1,000 images)" in result.summary()
    assert "750 lesions (1,000 images)" in result._repr_html_()
    assert not any("resample images" in note for note in result.notes)
    again = evaluate.Report.from_json(result.to_json(tmp_path / "report.json"))
    assert (again.n_groups, again.interval_unit, again.intervals) == (750, "lesion", result.intervals)
    assert again.summary() == result.summary()
    # reports written before lesion intervals existed resampled images
    old = result.to_dict()
    del old["n_groups"], old["interval_unit"]
    assert (evaluate.Report.from_dict(old).n_groups, evaluate.Report.from_dict(old).interval_unit) == (1000, "image")
    plain = evaluate.report(y, proba)
    assert (plain.n_groups, plain.interval_unit) == (1000, "image")
    assert plain.summary().endswith("(95 % intervals over 1,000 images)")


def test_absent_classes_give_nan_with_note_and_valid_json(tmp_path):
    y = np.array([MEL, MEL, NV, NV, NV])
    proba = one_hot(np.array([MEL, NV, NV, NV, MEL])) * 0.8 + 0.2 / 7
    result = evaluate.report(y, proba)
    assert result.accuracy == pytest.approx(3 / 5)
    assert result.balanced_accuracy == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert math.isnan(result.per_class.loc["akiec", "roc_auc"])
    assert result.roc_auc_macro == pytest.approx(result.per_class["roc_auc"].dropna().mean())
    assert any("absent" in note for note in result.notes)
    text = result.to_json(tmp_path / "report.json")
    json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} in JSON"))  # strict JSON
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["per_class"]["akiec"]["roc_auc"] is None
    assert data["metrics"]["accuracy"] == pytest.approx(0.6)
    again = evaluate.Report.from_json(tmp_path / "report.json")
    assert again.summary() == result.summary()
    pd.testing.assert_frame_equal(again.per_class, result.per_class, check_dtype=False)


def test_macro_auc_names_the_classes_it_averages(tmp_path):
    y = np.array([MEL, MEL, NV, NV, NV])
    proba = one_hot(np.array([MEL, NV, NV, NV, MEL])) * 0.8 + 0.2 / 7
    result = evaluate.report(y, proba)
    assert result.auc_classes == ("mel", "nv")
    assert "] (over 2 of 7 classes: mel, nv)" in result.summary().split("macro AUC")[1]
    assert result.to_dict()["auc_classes"] == ["mel", "nv"]
    assert any("averages the 2 classes whose AUC is defined: mel, nv" in note for note in result.notes)
    assert evaluate.Report.from_json(result.to_json(tmp_path / "r.json")).auc_classes == ("mel", "nv")
    full = evaluate.report(Y, one_hot(Y) * 0.5 + 0.5 / 7)
    assert full.auc_classes == tuple(CLASSES) and "(over 7 classes)" in full.summary()


def test_paired_difference_of_two_parts_and_reweighted_accuracy():
    # part A: 4 nv (3 right), 4 mel (1 right); part B: 8 nv (6 right), 0 mel... plus 2 mel (1 right)
    y = np.array([NV] * 4 + [MEL] * 4 + [NV] * 8 + [MEL] * 2)
    right = np.array([1, 1, 1, 0, 1, 0, 0, 0] + [1] * 6 + [0, 0] + [1, 0], dtype=bool)
    pred = np.where(right, y, (y + 1) % 7)
    part_a = np.arange(18) < 8
    shares = np.bincount(y, minlength=7) / 18  # nv 12/18, mel 6/18
    # recalls: A nv 3/4 mel 1/4; B nv 6/8 mel 1/2. Reweighted to the whole mix: A 2/3*3/4 + 1/3*1/4 = 7/12,
    # B 2/3*3/4 + 1/3*1/2 = 8/12. Balanced: A 1/2, B 5/8. Plain accuracy: A 4/8, B 7/10.
    reweighted = bootstrap.reweighted_accuracy(y[part_a], pred[part_a], shares=shares)
    assert reweighted == pytest.approx(7 / 12)
    assert bootstrap.reweighted_accuracy(y, pred, shares=shares) == pytest.approx(bootstrap.accuracy(y, pred))
    for metric, expected in ((bootstrap.accuracy, 4 / 8 - 7 / 10), (bootstrap.balanced_accuracy, 1 / 2 - 5 / 8)):
        assert bootstrap.paired_difference(metric, part_a, ~part_a)(y, pred, pred) == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs shares"):
        bootstrap.reweighted_accuracy(y, pred)
    with pytest.raises(ValueError, match=r"row mask of shape \(3,\) for 18 rows"):
        bootstrap.paired_difference(bootstrap.accuracy, part_a[:3])(y, pred, pred)


def test_report_renders_for_notebooks():
    y, proba = noisy_predictions(100, 0.7, seed=0)
    result = evaluate.report(y, proba)
    frame = result.to_frame()
    assert frame.loc["accuracy", "value"] == result.accuracy
    assert frame.loc["accuracy", "ci_low"] == result.intervals["accuracy"][0]
    html = result._repr_html_()
    assert html.count("<table") == 3  # metrics, per class, confusion matrix
    assert "melanoma_sensitivity" in html and "vasc" in html
    assert result.summary().startswith("n=100  accuracy")
    assert result.confusion_frame(normalize=True).sum(axis=1).round(6).eq(1).all()


# ------------------------------------------------------------------------------------------------
# Prediction and test-time augmentation
# ------------------------------------------------------------------------------------------------

def pooling_model(shape):
    """Global average pooling first: invariant to every flip and turn."""
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))


def flatten_model(shape):
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))


@pytest.mark.parametrize("shape", [(8, 8, 3), (6, 10, 3)])
def test_tta_of_symmetric_model_equals_plain_prediction(shape):
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (5, *shape)).astype(np.uint8)
    model = pooling_model(shape)
    plain = evaluate.predict(model, images, batch_size=2)
    assert plain.shape == (5, 7)
    np.testing.assert_allclose(plain.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(evaluate.predict(model, images, tta=True, batch_size=2), plain, atol=1e-6)
    # and it is an actual average: a position-sensitive model changes
    asymmetric = flatten_model(shape)
    assert not np.allclose(evaluate.predict(asymmetric, images, tta=True), evaluate.predict(asymmetric, images))


def test_tta_transforms_are_the_symmetries_of_the_image():
    square = np.random.default_rng(0).random((1, 5, 5, 1))
    views = [t(square) for t in evaluate.tta_transforms("d4", square.shape[1:]).values()]
    assert len(views) == 8
    assert len({v.tobytes() for v in views}) == 8  # all distinct
    assert len(evaluate.tta_transforms(True, (6, 10, 3))) == 4  # shape-preserving only
    assert len(evaluate.tta_transforms(None, (6, 10, 3))) == 1
    with pytest.raises(ValueError, match="square"):
        evaluate.tta_transforms("d4", (6, 10, 3))
    with pytest.raises(ValueError, match="tta"):
        evaluate.tta_transforms("rotate", (6, 6, 3))


# ------------------------------------------------------------------------------------------------
# Calibration
# ------------------------------------------------------------------------------------------------

def test_temperature_scaling_recovers_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (6000, 7))
    true_proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(7, p=p) for p in true_proba])
    overconfident = calibration.apply_temperature(true_proba, 1 / 3)  # logits x 3
    val, test = slice(0, 3000), slice(3000, None)
    scaler = calibration.TemperatureScaling().fit(overconfident[val], y[val])
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.15)
    calibrated = scaler.transform(overconfident[test])
    np.testing.assert_array_equal(calibrated.argmax(axis=1), overconfident[test].argmax(axis=1))
    before = calibration.expected_calibration_error(y[test], overconfident[test])
    after = calibration.expected_calibration_error(y[test], calibrated)
    assert after < before / 3 and after < 0.03


def test_reliability_table():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.6, 0.4]])
    table = calibration.reliability(y, proba, n_bins=10)
    assert table["count"].sum() == 4
    assert table.loc[9, "count"] == 2 and table.loc[9, "accuracy"] == 1.0
    assert table.loc[5, "count"] == 2 and table.loc[5, "accuracy"] == 0.5  # 0.55 and 0.6
    assert calibration.expected_calibration_error(y, proba, n_bins=10) == pytest.approx(
        (2 * 0.05 + 2 * abs(0.5 - 0.575)) / 4)
    with pytest.raises(RuntimeError, match="fit"):
        calibration.TemperatureScaling().transform(proba)


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

def test_figures_are_returned_and_saved(tmp_path):
    y, proba = noisy_predictions(120, 0.6, seed=0)
    history = pd.DataFrame({"epoch": [0, 1, 2, 0, 1], "stage": ["head"] * 3 + ["top"] * 2,
                            "loss": [2.0, 1.5, 1.2, 1.0, 0.9], "accuracy": [0.5, 0.6, 0.65, 0.7, 0.72],
                            "val_loss": [2.1, 1.7, 1.4, 1.2, 1.1], "val_accuracy": [0.4, 0.5, 0.6, 0.62, 0.64],
                            "lr": [1e-3] * 3 + [1e-4] * 2})
    images = np.random.default_rng(0).integers(0, 256, (120, 15, 20, 3)).astype(np.uint8)
    scaled = calibration.TemperatureScaling().fit(proba, y).transform(proba)
    made = {
        "curves": figures.training_curves(history, tmp_path / "curves.png"),
        "confusion": figures.confusion_matrices(y, proba, path=tmp_path / "confusion.png"),
        "roc": figures.roc_curves(y, proba, path=tmp_path / "roc.png"),
        "reliability": figures.reliability_diagram(y, {"raw": proba, "scaled": scaled},
                                                   path=tmp_path / "reliability.png"),
        "mistakes": figures.confident_mistakes(images, y, proba, n=6, path=tmp_path / "mistakes.png"),
        "gradcam": figures.gradcam_grid(images[:3], np.random.default_rng(0).random((3, 5, 5)),
                                        titles=["a", "b", "c"], path=tmp_path / "gradcam.png"),
    }
    for name, figure in made.items():
        assert isinstance(figure, Figure)
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_axis = made["curves"].axes[0]
    boundaries = [line.get_xdata()[0] for line in loss_axis.lines if line.get_linestyle() == "--"]
    assert boundaries == [3.5]  # the stage boundary, between epoch 3 (head) and 4 (top)
    assert {t.get_text() for t in loss_axis.get_legend().get_texts()} == {"train", "validation"}
    assert len(made["roc"].axes[0].get_lines()) == 7 + 1  # one curve per class, plus chance
    wrong = int((proba.argmax(axis=1) != y).sum())
    assert f"({wrong} of 120 images wrong)" in made["mistakes"].get_suptitle()
    with pytest.raises(ValueError, match="columns"):
        figures.training_curves(pd.DataFrame({"loss": [1.0]}))
