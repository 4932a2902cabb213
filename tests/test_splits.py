"""split(): the study's exact leaky split, and the grouped leakage-free one."""

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
