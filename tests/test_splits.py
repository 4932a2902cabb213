"""split(): the study's exact leaky split, and the grouped leakage-free one."""

import pandas as pd
import pytest

from skinlib import CLASSES
from skinlib.data import load_metadata, split, subset


@pytest.fixture(scope="module")
def meta(real_data):
    return load_metadata(real_data, images="images_200x150")


def test_seed_protocol_reproduces_the_study(meta):
    parts = split(meta, "study", val_size=0.1)
    assert (len(parts.train), len(parts.val), len(parts.test)) == (8111, 902, 1002)
    assert parts.train["dx"].value_counts().to_dict() == {
        "nv": 5427, "mel": 912, "bkl": 895, "bcc": 406, "akiec": 266, "vasc": 114, "df": 91}
    summary = parts.summary()
    assert summary.loc["shares lesion with train", "test"] == 397
    assert summary.loc["total"].tolist() == [8111, 902, 1002]


def test_seed_protocol_baseline_validation_share(meta):
    parts = split(meta, "study", val_size=0.2)
    assert (len(parts.train), len(parts.val), len(parts.test)) == (7210, 1803, 1002)


@pytest.fixture(scope="module")
def grouped(meta):
    """Grouped splits for two seeds (each takes seconds: StratifiedGroupKFold over 7,470 lesions)."""
    return {seed: split(meta, "grouped", seed=seed) for seed in (0, 1)}


@pytest.mark.parametrize("seed", [0, 1])
def test_grouped_protocol_is_leakage_free_and_stratified(meta, grouped, seed):
    parts = grouped[seed]
    frames = parts.parts()
    lesions = {name: set(frame["lesion_id"]) for name, frame in frames.items()}
    assert not lesions["train"] & lesions["val"]
    assert not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]
    assert sum(len(f) for f in frames.values()) == len(meta)
    assert set().union(*[set(f["image_id"]) for f in frames.values()]) == set(meta["image_id"])
    for name, frame in frames.items():
        assert abs(len(frame) / len(meta) - {"train": 0.8, "val": 0.1, "test": 0.1}[name]) < 0.02
    shares = parts.class_shares()
    gap = shares[["train", "val", "test"]].sub(shares["all"], axis=0).abs().to_numpy().max()
    assert gap <= 0.015
    assert parts.summary().loc["shares lesion with train"].sum() == 0


def test_grouped_is_deterministic(meta, grouped):
    again = split(meta, "grouped", seed=0)
    assert list(again.test["image_id"]) == list(grouped[0].test["image_id"])
    assert list(again.val["image_id"]) == list(grouped[0].val["image_id"])
    assert list(grouped[1].test["image_id"]) != list(grouped[0].test["image_id"])


def test_unknown_protocol(meta):
    with pytest.raises(ValueError, match="Unknown split protocol 'random'.*study, grouped"):
        split(meta, "random")


def test_subset_is_stratified_and_keeps_every_class(meta):
    small = subset(meta, 140, seed=0)
    assert len(small) == 140
    assert set(small["dx"]) == set(CLASSES)
    assert small["dx"].value_counts()["nv"] == pytest.approx(140 * 6705 / 10015, abs=3)
    assert list(small.index) == sorted(small.index)
    assert subset(meta, None) is meta


def test_grouped_split_of_synthetic_data(synthetic_data):
    parts = split(load_metadata(synthetic_data), "grouped", seed=0)
    assert parts.shared_lesions("test") == 0 and parts.shared_lesions("val") == 0


def test_study_deleaked_keeps_the_study_test_set_and_drops_its_lesions_from_training(meta):
    from skinlib.data import find_duplicates

    study = split(meta, "study", val_size=0.1)
    deleaked = split(meta, "study_deleaked", val_size=0.1)
    assert list(deleaked.test["image_id"]) == list(study.test["image_id"])
    assert (len(deleaked.train), len(deleaked.val)) == (8111 - 498, 902 - 76)
    assert set(deleaked.train["image_id"]) <= set(study.train["image_id"])
    assert set(deleaked.val["image_id"]) <= set(study.val["image_id"])
    assert deleaked.summary().loc["shares lesion with train", "test"] == 0
    assert deleaked.shared_lesions("test", "val") == 0
    pairs = find_duplicates(meta, candidates=0)  # the copy search alone: seconds (the re-take search: minutes)
    assert len(study.pairs_across(pairs).query("part_a == 'test' or part_b == 'test'")) == 40
    without = split(meta, "study_deleaked", val_size=0.1, duplicates=pairs)
    assert len(without.pairs_across(pairs).query("part_a == 'test' or part_b == 'test'")) == 0
    assert (len(without.train), len(without.val)) == (7608, 824)


@pytest.fixture(scope="module")
def dataverse(real_data):
    return load_metadata(real_data / "HAM10000_metadata_dataverse.csv", images="images_200x150")


def test_source_out_tests_on_one_source_and_trains_on_the_others(dataverse):
    parts = split(dataverse, "source_out", source="vienna_dias", seed=0)
    held = dataverse[dataverse["dataset"] == "vienna_dias"]
    assert list(parts.test["image_id"]) == list(held["image_id"])
    assert "vienna_dias" not in set(parts.train["dataset"]) | set(parts.val["dataset"])
    lesions = {name: set(frame["lesion_id"]) for name, frame in parts.parts().items()}
    assert not lesions["train"] & lesions["val"] and not lesions["test"] & (lesions["train"] | lesions["val"])
    spanning = dataverse[dataverse["lesion_id"].isin(lesions["test"]) & (dataverse["dataset"] != "vienna_dias")]
    assert len(parts.train) + len(parts.val) == len(dataverse) - len(held) - len(spanning)
    assert len(parts.val) / (len(parts.train) + len(parts.val)) == pytest.approx(0.1, abs=0.02)
    assert parts.protocol == "source_out"


def test_source_out_keeps_near_duplicates_of_test_images_out_of_training(dataverse):
    dataverse = subset(dataverse, 1500, seed=0)
    test_image = dataverse[dataverse["dataset"] == "vienna_dias"].iloc[0]
    other = dataverse[dataverse["dataset"] == "rosendahl"].iloc[0]
    pairs = pd.DataFrame({"image_id_a": [test_image["image_id"]], "image_id_b": [other["image_id"]],
                          "lesion_id_a": [test_image["lesion_id"]], "lesion_id_b": [other["lesion_id"]]})
    parts = split(dataverse, "source_out", source="vienna_dias", duplicates=pairs)
    kept = set(parts.train["lesion_id"]) | set(parts.val["lesion_id"])
    assert other["lesion_id"] not in kept and parts.pairs_across(pairs).empty


def test_source_out_refuses_what_it_cannot_split(meta, dataverse):
    with pytest.raises(ValueError, match="needs the image source, the `dataset` column.*Dataverse"):
        split(meta, "source_out", source="rosendahl")  # the Kaggle CSV has no `dataset`
    with pytest.raises(ValueError, match="has no source 'vienna'.*rosendahl, vidir_modern, vidir_molemax, vienna_dias"):
        split(dataverse, "source_out", source="vienna")
    with pytest.raises(ValueError, match="needs source=.*sources present are rosendahl"):
        split(dataverse, "source_out")
    with pytest.raises(ValueError, match="source='rosendahl'.*protocol='source_out', not 'grouped'"):
        split(dataverse, "grouped", source="rosendahl")


@pytest.mark.parametrize("val_size", [0.1, 0.2])
def test_study_control_has_the_deleaked_size_and_class_mix_and_the_study_test_set(meta, val_size):
    study = split(meta, "study", val_size=val_size)
    deleaked = split(meta, "study_deleaked", val_size=val_size)
    control = split(meta, "study_control", val_size=val_size)
    assert control.protocol == "study_control"
    assert list(control.test["image_id"]) == list(study.test["image_id"])
    for part in ("train", "val"):
        ours, theirs = getattr(control, part), getattr(deleaked, part)
        assert len(ours) == len(theirs) < len(getattr(study, part))
        assert ours["dx"].value_counts().to_dict() == theirs["dx"].value_counts().to_dict()
        assert set(ours["image_id"]) <= set(getattr(study, part)["image_id"])
        assert list(ours.index) == [i for i in getattr(study, part).index if i in set(ours.index)]  # order kept
    assert control.shared_lesions("test") > 300  # drawn at random: most of the leak stays
    again = split(meta, "study_control", val_size=val_size)
    assert list(again.train["image_id"]) == list(control.train["image_id"])
    other = split(meta, "study_control", val_size=val_size, seed=1)
    assert list(other.test["image_id"]) == list(split(meta, "study", val_size=val_size, seed=1).test["image_id"])


def test_leak_counts_quoted_in_the_docstrings(meta):
    for val_size, leaked in ((0.1, 397), (0.2, 361)):
        parts = split(meta, "study", val_size=val_size)
        assert parts.shared_lesions("test") == leaked
        train_or_val = set(parts.train["lesion_id"]) | set(parts.val["lesion_id"])
        assert int(parts.test["lesion_id"].isin(train_or_val).sum()) == 441
