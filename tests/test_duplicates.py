"""find_duplicates: near-identical images found from the pixels, and kept in one part by split()."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from skinlib.data import (DUPLICATE_THRESHOLD, duplicate_groups, find_duplicates, load_metadata, similarity_reference,
                          split, subset)
from skinlib.data import duplicates as dup_module
from skinlib.data.synthetic import make_synthetic
from skinlib.errors import DataError

SOURCE = "ISIC_9000000"
COPIES = ("flipped", "rotated", "cropped", "jpeg")


def _copy(image: Image.Image, kind: str) -> Image.Image:
    width, height = image.size
    if kind == "flipped":
        return ImageOps.mirror(image)
    if kind == "rotated":
        return image.rotate(90, expand=True)  # a portrait file, as a turned camera gives
    if kind == "cropped":  # 5% off each side, resized back
        box = (width // 20, height // 20, width - width // 20, height - height // 20)
        return image.crop(box).resize((width, height))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=30)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.fixture(scope="module")
def with_copies(tmp_path_factory):
    """A synthetic dataset at 150x200 plus four altered copies of its first image, each filed as a new lesion."""
    root = make_synthetic(tmp_path_factory.mktemp("dups") / "ham10000", n_images=70, seed=3, image_size=(150, 200))
    meta = load_metadata(root)
    source = meta.loc[meta["image_id"] == SOURCE].iloc[0]
    rows = []
    with Image.open(source["path"]) as image:
        for number, kind in enumerate(COPIES):
            image_id = f"ISIC_{9100000 + number:07d}"
            path = root / "HAM10000_images_part_1" / f"{image_id}.jpg"
            _copy(image.convert("RGB"), kind).save(path, quality=95)
            rows.append({**source.to_dict(), "image_id": image_id, "lesion_id": f"HAM_{9100000 + number:07d}",
                         "path": str(path), "copy": kind})
    return pd.concat([meta.assign(copy=None), pd.DataFrame(rows)], ignore_index=True)


@pytest.fixture(scope="module")
def pairs(with_copies, tmp_path_factory):
    return find_duplicates(with_copies, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.mark.parametrize("kind", COPIES)
def test_each_altered_copy_is_found(with_copies, pairs, kind):
    copy_id = with_copies.loc[with_copies["copy"] == kind, "image_id"].item()
    found = pairs[((pairs["image_id_a"] == SOURCE) & (pairs["image_id_b"] == copy_id))
                  | ((pairs["image_id_b"] == SOURCE) & (pairs["image_id_a"] == copy_id))]
    assert len(found) == 1, f"the {kind} copy of {SOURCE} was not found"
    assert found["similarity"].item() >= DUPLICATE_THRESHOLD and not found["same_lesion"].item()


def test_other_lesions_are_not_duplicates(with_copies, pairs):
    family = {SOURCE, *with_copies.loc[with_copies["copy"].notna(), "image_id"]}
    touching = pairs["image_id_a"].isin(family) | pairs["image_id_b"].isin(family)
    in_family = pairs["image_id_a"].isin(family) & pairs["image_id_b"].isin(family)
    strangers = pairs[touching & ~in_family]
    assert strangers.empty, f"other lesions taken for near-duplicates of {SOURCE}:\n{strangers}"
    # (two plain synthetic ellipses of one class and offset can look alike, so other pairs are not checked)
    assert in_family.sum() == len(family) * (len(family) - 1) // 2  # the five images of one photo, all pairs
    assert list(pairs.columns) == list(dup_module.PAIR_COLUMNS)
    assert pairs["similarity"].is_monotonic_decreasing


def test_similarity_reference_separates_random_pairs(with_copies):
    originals = with_copies[with_copies["copy"].isna()]
    reference = similarity_reference(originals, n_random=300, progress=False)
    sizes = originals.groupby("lesion_id").size()
    assert (reference["kind"] == "same lesion").sum() == (sizes * (sizes - 1) // 2).sum()
    random = reference.loc[reference["kind"] == "random", "similarity"]
    assert random.median() < 0.5 and (random >= DUPLICATE_THRESHOLD).mean() < 0.01


def test_cache_is_hit_the_second_time_and_keyed_by_the_images(with_copies, tmp_path, monkeypatch):
    frame = with_copies.head(12)
    first = find_duplicates(frame, threshold=0.0, cache_dir=tmp_path, progress=False)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]  # one cache file, no temporary left

    def no_search(*args, **kwargs):
        raise AssertionError("searched again instead of reading the cache")

    monkeypatch.setattr(dup_module, "_candidates", no_search)
    second = find_duplicates(frame, threshold=0.0, cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, second)
    stricter = find_duplicates(frame, threshold=0.5, cache_dir=tmp_path, progress=False)  # threshold: after the cache
    assert len(stricter) == (first["similarity"] >= 0.5).sum()
    with pytest.raises(AssertionError, match="searched again"):
        find_duplicates(frame.iloc[::-1], cache_dir=tmp_path, progress=False)  # another image list


def test_merged_groups_keep_each_pair_in_one_part(with_copies, pairs):
    plain = [split(with_copies, "grouped", seed=seed) for seed in range(6)]
    assert any(len(parts.pairs_across(pairs)) for parts in plain), "no seed splits the copies: test is moot"
    for seed in range(6):
        parts = split(with_copies, "grouped", seed=seed, duplicates=pairs)
        assert parts.pairs_across(pairs).empty
        assert sum(len(frame) for frame in parts.parts().values()) == len(with_copies)
        assert parts.summary(pairs).loc["near-duplicate in train"].sum() == 0


def test_duplicate_groups_union_find():
    meta = pd.DataFrame({"lesion_id": ["L3", "L1", "L2", "L4", "L2"], "image_id": list("abcde")})
    pairs = pd.DataFrame({"image_id_a": ["a", "c"], "image_id_b": ["c", "b"], "lesion_id_a": ["L3", "L2"],
                          "lesion_id_b": ["L2", "L1"]})
    assert duplicate_groups(meta, pairs).tolist() == ["L1", "L1", "L1", "L4", "L1"]  # a chain, one group
    assert duplicate_groups(meta, pairs.iloc[:0]).tolist() == meta["lesion_id"].tolist()
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['lesion_id_a', 'lesion_id_b'\].*find_duplicates"):
        duplicate_groups(meta, pairs[["image_id_a", "image_id_b"]])


def test_no_duplicates_keeps_the_grouped_split(synthetic_data):
    meta = load_metadata(synthetic_data)
    plain = split(meta, "grouped", seed=0)
    empty = pd.DataFrame(columns=list(dup_module.PAIR_COLUMNS))
    merged = split(meta, "grouped", seed=0, duplicates=empty)
    assert list(plain.test["image_id"]) == list(merged.test["image_id"])
    assert list(plain.val["image_id"]) == list(merged.val["image_id"])
    with pytest.raises(ValueError, match="protocol='study'.*takes no duplicates"):
        split(meta, "study", duplicates=empty)


def test_clear_errors(synthetic_data):
    meta = load_metadata(synthetic_data)
    with pytest.raises(DataError, match=r"\['path'\].*load_metadata"):
        find_duplicates(meta.drop(columns="path"), cache=False, progress=False)
    broken = meta.head(3).assign(path=str(synthetic_data / "missing.jpg"))
    with pytest.raises(DataError, match="missing.jpg"):
        find_duplicates(broken, cache=False, progress=False)


def test_real_data_known_pair_and_random_pairs(real_data):
    """On 300 real images plus two that the search flags across lesions: the pair is found, random pairs are not."""
    meta = load_metadata(real_data, images="images_200x150")
    known = {"ISIC_0025226", "ISIC_0030074"}  # one photo, filed as HAM_0004919 and HAM_0000140
    sample = pd.concat([subset(meta, 300, seed=0), meta[meta["image_id"].isin(known)]]).drop_duplicates("image_id")
    found = find_duplicates(sample, cache=False, progress=False)
    cross = found[~found["same_lesion"]]
    assert {frozenset(p) for p in zip(cross["image_id_a"], cross["image_id_b"])} == {frozenset(known)}
    reference = similarity_reference(sample, n_random=2000, progress=False)
    assert np.quantile(reference.loc[reference["kind"] == "random", "similarity"], 0.99) < 0.8


def test_notebook_01_section_helpers(with_copies, pairs):
    from matplotlib.figure import Figure

    from skinlib import leakage

    figure = leakage.duplicate_pairs_figure(with_copies, pairs, n=3)
    assert isinstance(figure, Figure) and len(figure.axes) == 3 * 2
    across = leakage.duplicate_leakage(with_copies, pairs, seed=1)
    assert list(across.index) == ["study", "grouped", "grouped, duplicates merged"]
    assert across.loc["grouped, duplicates merged", "pairs across parts"] == 0
    assert across.loc["study", "pairs across parts"] > 0  # 10 pairs of one photo among 74 images: some split
    reference = similarity_reference(with_copies, n_random=200, progress=False)
    table = leakage.similarity_quantiles(reference)
    assert table.loc["same lesion", "pairs"] == (reference["kind"] == "same lesion").sum()
    assert isinstance(leakage.similarity_figure(reference), Figure)
