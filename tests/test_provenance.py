"""provenance: the image source joined from the Dataverse metadata, tabulated per class, and probed from colour."""

import numpy as np
import pandas as pd
import pytest

from skinlib import provenance

SOURCES = ("rosendahl", "vidir_modern", "vidir_molemax", "vienna_dias")


def tinted(n: int, seed: int = 0, tint: float = 40.0):
    """Metadata of ``n`` images in four sources, two photos per lesion, each source's images tinted its way."""
    rng = np.random.default_rng(seed)
    source = np.array(SOURCES)[np.arange(n) // 2 % 4]
    meta = pd.DataFrame({"lesion_id": [f"HAM_{i // 2:05d}" for i in range(n)],
                         "image_id": [f"ISIC_{i:07d}" for i in range(n)],
                         "dx": np.where(np.arange(n) % 3 == 0, "mel", "nv"), "dataset": source})
    images = rng.normal(120, 25, size=(n, 12, 16, 3))
    shift = {name: tint * np.eye(3)[k % 3] * (1 if k < 3 else -1) for k, name in enumerate(SOURCES)}
    images += np.stack([shift[s] for s in source])[:, None, None, :]
    return meta, np.clip(images, 0, 255).astype(np.uint8)


def test_colour_features_match_numpy():
    _, images = tinted(8)
    features = provenance.colour_features(images, chunk=3)
    pixels = images.reshape(8, -1, 3).astype(np.float64)
    assert features.shape == (8, 3 * (2 + len(provenance.PERCENTILES) + provenance.HISTOGRAM_BINS))
    np.testing.assert_allclose(features[["mean_red", "mean_green", "mean_blue"]], pixels.mean(axis=1))
    np.testing.assert_allclose(features[["std_red", "std_green", "std_blue"]], pixels.std(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(features[["p25_red", "p25_green", "p25_blue"]],
                                  np.percentile(pixels, 25, axis=1, method="inverted_cdf"))
    histogram = features.filter(like="hist").to_numpy().reshape(8, provenance.HISTOGRAM_BINS, 3)
    np.testing.assert_allclose(histogram.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="colour_features.*expected an \\(N, H, W, 3\\)"):
        provenance.colour_features(images[..., 0])


def test_probe_finds_a_tint_and_not_noise():
    meta, images = tinted(240)
    found = provenance.probe(meta, images, n_bootstrap=200)
    assert found.balanced_accuracy > 0.9 and found.interval[0] > 0.5
    assert found.chance == 0.25 and found.majority_rate == pytest.approx(0.25)
    assert int(found.confusion.to_numpy().sum()) == 240 and found.folds == 5
    plain, _ = tinted(240, tint=0.0)
    _, noise = tinted(240, seed=1, tint=0.0)
    blind = provenance.probe(plain, noise, n_bootstrap=200)
    assert blind.interval[0] < 0.25 + 0.1 and blind.balanced_accuracy < found.balanced_accuracy - 0.4
    frame = found.to_frame()
    assert frame.loc["balanced accuracy", "probe"] == found.balanced_accuracy
    assert frame.loc["accuracy", "guessing"] == found.majority_rate


def test_probe_on_given_features_such_as_the_metadata():
    meta, images = tinted(240)
    telling = np.eye(4)[[SOURCES.index(v) for v in meta["dataset"]]]  # a feature that names the source
    found = provenance.probe(meta, features=telling, n_bootstrap=50)
    assert found.balanced_accuracy == 1.0 and found.inputs == "the given features"
    assert "source probe on the given features" in found.summary()
    noise = np.random.default_rng(0).normal(size=(240, 4))
    assert provenance.probe(meta, features=noise, n_bootstrap=50).balanced_accuracy < 0.5
    for images_given, features in ((images, telling), (None, None)):
        with pytest.raises(ValueError, match="give the images .* or features, one of the two"):
            provenance.probe(meta, images_given, features=features)
    with pytest.raises(ValueError, match="10 feature rows for 240"):
        provenance.probe(meta, features=telling[:10])


def test_probe_within_one_class_and_its_errors():
    meta, images = tinted(240)
    nevi = provenance.probe(meta, images, within="nv", n_bootstrap=50)
    assert nevi.images == int((meta["dx"] == "nv").sum()) and nevi.within == "nv"
    with pytest.raises(ValueError, match="within='bcc'.*present: \\['mel', 'nv'\\]"):
        provenance.probe(meta, images, within="bcc")
    with pytest.raises(ValueError, match="no `dataset` column.*provenance.attach"):
        provenance.probe(meta.drop(columns="dataset"), images)
    with pytest.raises(ValueError, match="10 images for 240"):
        provenance.probe(meta, images[:10])


def test_by_diagnosis_counts_and_nevus_share():
    meta, _ = tinted(80)
    table = provenance.by_diagnosis(meta)
    assert list(table.index) == [*SOURCES, "total"]
    expected = pd.crosstab(meta["dataset"], meta["dx"])
    assert (table.loc[list(SOURCES), ["mel", "nv"]].to_numpy() == expected.to_numpy()).all()
    assert table.loc["total", "images"] == 80 and table.loc["total", "lesions"] == 40
    assert table.loc["rosendahl", "nv share"] == pytest.approx(expected.loc["rosendahl", "nv"] / 20)


def test_attach_reads_the_dataverse_csv_or_says_none(tmp_path):
    meta, _ = tinted(12)
    kaggle = meta.drop(columns="dataset")
    assert provenance.attach(kaggle, tmp_path) is None and provenance.attach(kaggle) is None
    assert provenance.attach(meta, tmp_path) is meta
    columns = {"dx_type": "histo", "age": 50, "sex": "male", "localization": "back"}
    meta.iloc[::-1].assign(**columns).to_csv(tmp_path / "HAM10000_metadata_dataverse.csv", index=False)
    joined = provenance.attach(kaggle, tmp_path)
    assert list(joined["dataset"]) == list(meta["dataset"]) and list(joined["image_id"]) == list(meta["image_id"])
