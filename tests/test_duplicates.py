"""find_duplicates: near-identical images found from the pixels, and kept in one part by split()."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from skinlib.data import (DUPLICATE_THRESHOLD, INLIER_THRESHOLD, duplicate_groups, find_duplicates, load_metadata,
                          similarity_reference, split, subset)
from skinlib.data import duplicates as dup_module
from skinlib.data import retakes as retakes_module
from skinlib.data.synthetic import make_synthetic
from skinlib.errors import DataError

SOURCE = "ISIC_9000000"
REAL_RECALL_FLOOR = 0.70  # measured 0.746 on the 134 images of `real_sample` with another photo of their lesion
REAL_CROSS_LESION_CEILING = 2  # measured 1 (the photo filed twice)
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
    assert pairs["inliers"].is_monotonic_decreasing


def test_similarity_reference_separates_random_pairs(with_copies):
    originals = with_copies[with_copies["copy"].isna()]
    reference = similarity_reference(originals, n_random=300, progress=False)
    sizes = originals.groupby("lesion_id").size()
    assert (reference["kind"] == "same lesion").sum() == (sizes * (sizes - 1) // 2).sum()
    random = reference.loc[reference["kind"] == "random", "similarity"]
    assert random.median() < 0.5 and (random >= DUPLICATE_THRESHOLD).mean() < 0.01


def test_result_cache_is_keyed_by_the_images(with_copies, tmp_path, monkeypatch):
    frame = with_copies.head(12)
    first = find_duplicates(frame, threshold=0, cache_dir=tmp_path, progress=False)
    assert len([p for p in tmp_path.iterdir() if p.suffix == ".npz"]) == 1  # the result, beside the feature store

    def no_search(*args, **kwargs):
        raise AssertionError("searched again instead of reading the cache")

    monkeypatch.setattr(dup_module, "search", no_search)
    pd.testing.assert_frame_equal(first, find_duplicates(frame, threshold=0, cache_dir=tmp_path, progress=False))
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


@pytest.fixture(scope="module")
def real_sample(real_data, tmp_path_factory):
    """About 250 real images: 60 lesions with several photos (all of them), 100 single photos, and one photo filed
    under two lesion ids (ISIC_0025226 as HAM_0004919, ISIC_0030074 as HAM_0000140); and all their candidate pairs."""
    meta = load_metadata(real_data, images="images_200x150")
    sizes = meta.groupby("lesion_id")["image_id"].transform("size")
    several = meta.loc[sizes > 1, "lesion_id"].drop_duplicates().sample(60, random_state=0)
    single = meta[sizes == 1].sample(100, random_state=0)
    known = meta[meta["image_id"].isin(KNOWN)]
    sample = pd.concat([meta[meta["lesion_id"].isin(several)], single, known]).drop_duplicates("image_id")
    cache = tmp_path_factory.mktemp("real-cache")
    candidates = find_duplicates(sample, threshold=0, copy_threshold=-1.0, cache_dir=cache, progress=False)
    return sample.reset_index(drop=True), candidates, find_duplicates(sample, cache_dir=cache, progress=False)


KNOWN = ("ISIC_0025226", "ISIC_0030074")


def test_real_data_known_pair_and_random_pairs(real_sample):
    """The photo filed twice is flagged; random pairs of different lesions stay below the copy threshold."""
    sample, _, flagged = real_sample
    cross = flagged[~flagged["same_lesion"]]
    assert frozenset(KNOWN) in {frozenset(p) for p in zip(cross["image_id_a"], cross["image_id_b"])}
    assert len(cross) <= REAL_CROSS_LESION_CEILING, cross
    reference = similarity_reference(sample, n_random=2000, progress=False)
    assert np.quantile(reference.loc[reference["kind"] == "random", "similarity"], 0.99) < 0.8


def test_real_data_same_lesion_recall(real_sample):
    """Recall@1 of same-lesion partners (best candidate by inliers, then similarity) stays above the measured floor."""
    sample, candidates, _ = real_sample
    both = pd.concat([candidates, candidates.rename(columns={"image_id_a": "image_id_b", "image_id_b": "image_id_a",
                                                              "lesion_id_a": "lesion_id_b",
                                                              "lesion_id_b": "lesion_id_a"})])
    best = both.sort_values(["inliers", "similarity"], ascending=False, kind="stable").groupby("image_id_a").head(1)
    several = sample.loc[sample.groupby("lesion_id")["image_id"].transform("size") > 1, "image_id"]
    hits = best.set_index("image_id_a")["same_lesion"].reindex(several, fill_value=False)
    assert len(hits) >= 120 and hits.mean() >= REAL_RECALL_FLOOR, f"recall@1 {hits.mean():.3f} on {len(hits)} images"


def test_notebook_01_section_helpers(with_copies, pairs):
    from matplotlib.figure import Figure

    from skinlib import leakage

    figure = leakage.duplicate_pairs_figure(with_copies, pairs, n=3)
    assert isinstance(figure, Figure) and len(figure.axes) == 3 * 2
    merged = leakage.merged_lesions(with_copies, pairs)["count"]
    family = with_copies[with_copies["image_id"] == SOURCE]["lesion_id"].tolist() + list(
        with_copies.loc[with_copies["copy"].notna(), "lesion_id"])
    assert merged["groups joining several lesion ids"] >= 1 and merged["lesion ids in them"] >= len(set(family))
    assert merged["lesion ids"] - merged["groups after merging"] == (merged["lesion ids in them"]
                                                                     - merged["groups joining several lesion ids"])
    across = leakage.duplicate_leakage(with_copies, pairs, seed=1)
    assert list(across.index) == ["study", "grouped", "grouped, duplicates merged"]
    assert across.loc["grouped, duplicates merged", "pairs across parts"] == 0
    assert across.loc["study", "pairs across parts"] > 0  # 10 pairs of one photo among 74 images: some split
    reference = similarity_reference(with_copies, n_random=200, progress=False)
    table = leakage.similarity_quantiles(reference)
    assert table.loc["same lesion", "pairs"] == (reference["kind"] == "same lesion").sum()
    assert isinstance(leakage.similarity_figure(reference), Figure)


# ---------------------------------------------------------------------------------------------------------
# Re-takes: the same lesion photographed again (turned, shifted, zoomed, other light), which copies miss
# ---------------------------------------------------------------------------------------------------------

RETAKES = {  # kind: (turn in degrees, shift as a share of the width, zoom, per-channel gain, gamma, JPEG quality)
    "turned 12 deg": (12.0, 0.0, 1.0, (1, 1, 1), 1.0, 90),
    "shifted 8%": (0.0, 0.08, 1.0, (1, 1, 1), 1.0, 90),
    "zoomed 1.35x": (0.0, 0.0, 1.35, (1, 1, 1), 1.0, 90),
    "white balance": (0.0, 0.0, 1.0, (1.15, 1.0, 0.8), 1.0, 90),
    "gamma 0.7": (0.0, 0.0, 1.0, (1, 1, 1), 0.7, 90),
    "all, JPEG 40": (-17.0, 0.06, 1.25, (0.9, 1.0, 1.12), 1.25, 40),
}
SCENE = (260, 340)  # each synthetic lesion is drawn larger than a photo, so a shifted or turned view stays inside
PHOTO = (150, 200)


def _scene(rng: np.random.Generator) -> np.ndarray:
    """A textured synthetic lesion on skin (blurred noise and dark dots inside a dark blob): SIFT finds keypoints."""
    import cv2

    height, width = SCENE
    texture = sum(cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), sigma) * sigma
                  for sigma in (1.0, 2.5, 6.0))
    yy, xx = np.mgrid[:height, :width]
    blob = np.exp(-(((yy - height / 2) / 60) ** 2 + ((xx - width / 2) / 80) ** 2) ** 1.5)[..., None]
    pixels = np.array([215, 170, 150]) * (1 - 0.5 * blob) + 30 * texture[..., None] * (0.3 + blob)
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    for _ in range(120):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        shade = tuple(int(c) for c in rng.integers(20, 120, size=3))
        cv2.circle(pixels, centre, int(rng.integers(2, 7)), shade, -1, lineType=cv2.LINE_AA)
    return pixels


def _photo(scene: np.ndarray, turn=0.0, shift=0.0, zoom=1.0, gains=(1, 1, 1), gamma=1.0) -> Image.Image:
    import cv2

    height, width = SCENE
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), turn, zoom)
    matrix[0, 2] += shift * PHOTO[1]
    view = cv2.warpAffine(scene, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    top, left = (height - PHOTO[0]) // 2, (width - PHOTO[1]) // 2
    view = view[top:top + PHOTO[0], left:left + PHOTO[1]].astype(np.float64) / 255
    view = np.clip(view ** gamma * np.array(gains), 0, 1)
    return Image.fromarray(np.round(view * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def retakes(tmp_path_factory):
    """Eight unrelated textured lesions, and six re-takes of the first, each filed as its own lesion."""
    folder = tmp_path_factory.mktemp("retakes")
    rng = np.random.default_rng(23)
    scenes = [_scene(rng) for _ in range(8)]
    rows = []
    for number, scene in enumerate(scenes):
        rows.append({"image_id": f"ISIC_{9200000 + number:07d}", "kind": None, "photo": _photo(scene)})
    for number, (kind, (turn, shift, zoom, gains, gamma, quality)) in enumerate(RETAKES.items()):
        rows.append({"image_id": f"ISIC_{9300000 + number:07d}", "kind": kind, "quality": quality,
                     "photo": _photo(scenes[0], turn, shift, zoom, gains, gamma)})
    for row in rows:
        row["path"] = str(folder / f"{row['image_id']}.jpg")
        row.pop("photo").save(row["path"], quality=row.pop("quality", 90))
        row.update(lesion_id=row["image_id"].replace("ISIC", "HAM"), dx="nv")
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def retake_pairs(retakes, tmp_path_factory):
    return find_duplicates(retakes, threshold=0, copy_threshold=-1.0, cache_dir=tmp_path_factory.mktemp("cache"),
                           progress=False)


def _pair(pairs: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    return pairs[((pairs["image_id_a"] == first) & (pairs["image_id_b"] == second))
                 | ((pairs["image_id_b"] == first) & (pairs["image_id_a"] == second))]


@pytest.mark.parametrize("kind", RETAKES)
def test_each_retake_is_found_where_the_copy_search_misses_it(retakes, retake_pairs, kind):
    source = retakes["image_id"].iloc[0]
    retake = retakes.loc[retakes["kind"] == kind, "image_id"].item()
    found = _pair(retake_pairs, source, retake)
    assert len(found) == 1, f"the {kind} re-take of {source} is not even a candidate"
    assert found["inliers"].item() >= INLIER_THRESHOLD, f"the {kind} re-take has {found['inliers'].item()} inliers"
    if kind in ("turned 12 deg", "zoomed 1.35x", "all, JPEG 40"):
        assert found["similarity"].item() < DUPLICATE_THRESHOLD  # the copy search alone misses it


def test_unrelated_lesions_stay_apart(retakes, retake_pairs):
    family = set(retakes["image_id"].iloc[:1]) | set(retakes.loc[retakes["kind"].notna(), "image_id"])
    strangers = retake_pairs[~(retake_pairs["image_id_a"].isin(family) & retake_pairs["image_id_b"].isin(family))]
    assert len(strangers) > 0 and strangers["inliers"].max() < INLIER_THRESHOLD, strangers
    flagged = find_duplicates(retakes, cache_dir=None, cache=False, progress=False)
    assert set(flagged["image_id_a"]) | set(flagged["image_id_b"]) <= family
    assert flagged["inliers"].is_monotonic_decreasing and list(flagged.columns) == list(dup_module.PAIR_COLUMNS)


def test_descriptors_and_pair_scores_are_cached_per_image(retakes, tmp_path, monkeypatch):
    calls = {"describe": 0, "verify": 0}
    describe, verify = retakes_module.describe, retakes_module.verify

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(retakes_module, "describe", counted("describe", describe))
    monkeypatch.setattr(retakes_module, "verify", counted("verify", verify))
    first = find_duplicates(retakes.iloc[:-1], threshold=0, cache_dir=tmp_path, workers=1, progress=False)
    assert calls["describe"] == len(retakes) - 1 and calls["verify"] > 0
    calls.update(describe=0, verify=0)
    again = find_duplicates(retakes.iloc[:-1], threshold=0, cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert calls == {"describe": 0, "verify": 0}  # the result cache: nothing described or verified again
    stricter = find_duplicates(retakes.iloc[:-1], threshold=20, cache_dir=tmp_path, progress=False)
    assert len(stricter) == ((first["inliers"] >= 20) | (first["similarity"] >= DUPLICATE_THRESHOLD)).sum()
    grown = find_duplicates(retakes, threshold=0, cache_dir=tmp_path, workers=1, progress=False)  # one image added
    assert calls["describe"] == 1  # only the new image is described
    new = grown["image_id_a"].eq(retakes["image_id"].iloc[-1]) | grown["image_id_b"].eq(retakes["image_id"].iloc[-1])
    assert 0 < calls["verify"] <= new.sum() + len(grown) // 2  # mostly the new image's pairs
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left
