"""make_synthetic and load_isic2018_test on generated data."""

import numpy as np
import pandas as pd
import pytest

from skinlib import CLASSES
from skinlib.data import load_images, load_isic2018_test, load_metadata, make_synthetic
from skinlib.errors import DataError


def test_synthetic_dataset_is_ham10000_shaped(synthetic_data):
    meta = load_metadata(synthetic_data)
    assert len(meta) == 70 and set(meta["dx"]) == set(CLASSES)
    per_lesion = meta.groupby("lesion_id").size()
    assert per_lesion.min() >= 1 and per_lesion.max() <= 3 and (per_lesion > 1).any()
    masks = list((synthetic_data / "HAM10000_segmentations_lesion_tschandl").glob("*_segmentation.png"))
    assert len(masks) == 70


def test_synthetic_classes_differ_in_colour(synthetic_data, tmp_path):
    meta = load_metadata(synthetic_data)
    images = load_images(meta, size=(30, 40), cache_dir=tmp_path, progress=False)
    centre = images[:, 12:18, 17:23].reshape(len(images), -1, 3).mean(axis=1)
    means = pd.DataFrame(centre).groupby(meta["dx"].to_numpy()).mean()
    gaps = [np.abs(means.loc[a] - means.loc[b]).max() for a in CLASSES for b in CLASSES if a < b]
    assert min(gaps) > 10, "each class should have its own lesion colour"


def test_synthetic_is_reproducible(tmp_path):
    first = pd.read_csv(make_synthetic(tmp_path / "a", n_images=20, seed=5) / "HAM10000_metadata.csv")
    again = pd.read_csv(make_synthetic(tmp_path / "b", n_images=20, seed=5) / "HAM10000_metadata.csv")
    pd.testing.assert_frame_equal(first, again)


def make_isic_folder(root, synthetic_data, form):
    meta = load_metadata(synthetic_data).head(12)
    images = root / "ISIC2018_Task3_Test_Images"
    images.mkdir(parents=True)
    for path in meta["path"].iloc[:11]:  # the twelfth has no image, like ISIC_0035068
        (images / path.split("/")[-1]).write_bytes(open(path, "rb").read())
    if form == "one-hot":
        table = pd.DataFrame({"image": meta["image_id"]})
        for code in ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"):
            table[code] = (meta["dx"].str.upper() == code).astype(float).to_numpy()
        table.to_csv(root / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    else:
        meta.drop(columns=["path", "label"]).to_csv(root / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    return meta


@pytest.mark.parametrize("form", ["one-hot", "dx"])
def test_isic2018_test_set(tmp_path, synthetic_data, form):
    meta = make_isic_folder(tmp_path, synthetic_data, form)
    with pytest.warns(UserWarning, match=rf"1 ground-truth row\(s\) have no image .*{meta['image_id'].iloc[11]}"):
        test = load_isic2018_test(tmp_path)
    assert len(test) == 11
    assert list(test["dx"]) == list(meta["dx"].iloc[:11])
    assert list(test["label"]) == list(meta["label"].iloc[:11])


def test_isic2018_missing_ground_truth(tmp_path):
    with pytest.raises(DataError, match="No ISIC 2018 Task 3 ground truth.*--parts isic2018_test"):
        load_isic2018_test(tmp_path)
