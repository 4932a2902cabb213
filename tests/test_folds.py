"""Lesion-grouped K-fold cross-validation: split(meta, "grouped", folds=K, fold=j) and grouped_folds."""

import numpy as np
import pandas as pd
import pytest

from skinlib import settings
from skinlib.data import duplicate_groups, grouped_folds, load_metadata, split

FOLDS = 5


@pytest.fixture(scope="module")
def meta(real_data):
    return load_metadata(real_data, images="images_200x150")


@pytest.fixture(scope="module")
def pairs(meta):
    """300 made-up near-duplicate pairs across lesions, so that merged groups span several lesions."""
    rng = np.random.default_rng(0)
    a, b = (meta.iloc[rng.choice(len(meta), 300, replace=False)] for _ in range(2))
    return pd.DataFrame({"image_id_a": a["image_id"].to_numpy(), "image_id_b": b["image_id"].to_numpy(),
                         "lesion_id_a": a["lesion_id"].to_numpy(), "lesion_id_b": b["lesion_id"].to_numpy()})


@pytest.fixture(scope="module")
def cv(meta, pairs):
    """The five splits of seed 0 with the made-up pairs merged."""
    return [split(meta, "grouped", seed=0, folds=FOLDS, fold=j, duplicates=pairs) for j in range(FOLDS)]


def test_test_folds_partition_the_images(meta, cv):
    tested = pd.concat([parts.test["image_id"] for parts in cv])
    assert tested.is_unique and set(tested) == set(meta["image_id"])  # out-of-fold: every image tested once
    for parts in cv:
        assert sum(len(frame) for frame in parts.parts().values()) == len(meta)
        assert abs(len(parts.test) / len(meta) - 1 / FOLDS) < 0.01
        assert abs(len(parts.val) / len(meta) - 0.1) < 0.01


def test_no_lesion_or_merged_group_in_two_folds_or_two_parts(meta, pairs, cv):
    groups = duplicate_groups(meta, pairs)
    assert groups.nunique() < meta["lesion_id"].nunique()  # the pairs did merge lesions
    fold_of = pd.concat([pd.Series(j, index=parts.test.index) for j, parts in enumerate(cv)]).loc[meta.index]
    assert fold_of.groupby(meta["lesion_id"]).nunique().max() == 1
    assert fold_of.groupby(groups).nunique().max() == 1
    for parts in cv:
        in_part = {name: set(groups.loc[frame.index]) for name, frame in parts.parts().items()}
        assert not in_part["train"] & in_part["test"] and not in_part["val"] & in_part["test"]
        assert not in_part["train"] & in_part["val"]


def test_class_shares_per_fold_within_one_and_a_half_points(meta, cv):
    for parts in cv:
        shares = parts.class_shares()
        gap = shares[["train", "val", "test"]].sub(shares["all"], axis=0).abs().to_numpy().max()
        assert gap <= 0.015, f"fold {parts.fold}: a class share {gap:.3%} from the whole"


def test_folds_follow_the_seed_and_no_folds_is_the_single_split(synthetic_data):
    meta = load_metadata(synthetic_data)
    first, again, other = (grouped_folds(meta, 3, seed) for seed in (0, 0, 1))
    assert first.equals(again) and not first.equals(other)
    assert sorted(first.unique()) == [0, 1, 2]
    tested = pd.concat([split(meta, "grouped", seed=3, folds=3, fold=j).test for j in range(3)])
    assert tested["image_id"].is_unique and len(tested) == len(meta)
    single = split(meta, "grouped", seed=0)
    assert single.folds is None and single.fold is None
    assert list(single.test["image_id"]) == list(split(meta, "grouped", seed=0, folds=None).test["image_id"])


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "grouped", "folds": 5, "fold": 5}, r"fold=5.*from 0 to 4"),
    ({"protocol": "grouped", "folds": 5, "fold": None}, r"fold=None.*from 0 to 4"),
    ({"protocol": "grouped", "folds": 1, "fold": 0}, r"folds=1.*>= 2"),
    ({"protocol": "grouped", "folds": None, "fold": 2}, r"fold=2.*needs folds="),
    ({"protocol": "study", "folds": 5, "fold": 0}, r"needs protocol='grouped', not 'study'"),
    ({"protocol": "study_deleaked", "folds": 5, "fold": 0}, r"needs protocol='grouped'"),
])
def test_folds_that_cannot_be_used_are_named(synthetic_data, kwargs, message):
    meta = load_metadata(synthetic_data)
    with pytest.raises(ValueError, match=message):
        split(meta, seed=0, **kwargs)


def test_settings_check_folds_and_fold_before_any_work():
    run = settings.resolve("04", {"protocol": "grouped", "folds": 5, "fold": 3})
    assert (run.folds, run.fold) == (5, 3) and run.split_options["folds"] == 5
    assert run.to_dict()["fold"] == 3
    assert settings.resolve("04", {}).split_options == {"protocol": "study", "seed": 0, "val_size": 0.1,
                                                        "folds": None, "fold": None, "source": None}
    for given, message in [({"protocol": "grouped", "folds": 5, "fold": 7}, "parameter fold=7.*0 to 4"),
                           ({"protocol": "study", "folds": 5, "fold": 0}, "parameter folds=5.*protocol='grouped'"),
                           ({"protocol": "grouped", "fold": 1}, "parameter fold=1.*needs folds"),
                           ({"protocol": "grouped", "folds": 1, "fold": 0}, "parameter folds=1.*>= 2")]:
        with pytest.raises(settings.SettingsError, match=message):
            settings.resolve("04", given)


def test_the_ensemble_only_joins_members_of_the_same_fold():
    members = {n: settings.resolve(n, {"protocol": "grouped", "folds": 5, "fold": 1}) for n in ("07", "08")}
    assert settings.shared_split(members)["fold"] == 1
    members["08"] = settings.resolve("08", {"protocol": "grouped", "folds": 5, "fold": 2})
    with pytest.raises(settings.SettingsError, match="different splits: fold=1 vs 2"):
        settings.shared_split(members)


def test_source_out_needs_its_source_and_a_source_needs_source_out():
    run = settings.resolve("02", {"protocol": "source_out", "source": "rosendahl"})
    assert run.split_options["source"] == "rosendahl" and run.to_dict()["source"] == "rosendahl"
    for given, message in [({"protocol": "source_out"}, "parameter source=None.*give it, e.g. source='rosendahl'"),
                           ({"source": "rosendahl"}, "parameter source='rosendahl'.*needs protocol='source_out'"),
                           ({"protocol": "source_out", "source": ""}, "parameter source=''.*image source")]:
        with pytest.raises(settings.SettingsError, match=message):
            settings.resolve("02", given)


def test_a_source_out_run_without_the_dataverse_metadata_says_what_to_add(tmp_path):
    import pandas as pd

    from skinlib import provenance

    meta = pd.DataFrame({"image_id": ["ISIC_1"], "lesion_id": ["HAM_1"], "dx": ["nv"]})
    assert provenance.with_source(meta, tmp_path) is meta  # image-only protocols go on without it
    with pytest.raises(ValueError, match="source_out' needs the image source.*HAM10000_metadata_dataverse.csv"):
        provenance.with_source(meta, tmp_path, required=True)
