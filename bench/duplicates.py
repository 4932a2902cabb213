"""Same-lesion partner retrieval: the copy search alone (the detector before issue 23) against find_duplicates.

Of the images whose lesion has another photo, recall@1 is the share whose best-scored other image is a photo of
the same lesion, recall@5 the share with one among its best five. The copy search ranks by its similarity over
every image (its exhaustive nearest-neighbour search); find_duplicates ranks its candidate pairs by inliers, then
similarity (an image's partner outside its candidates counts as missed). Also: cross-lesion pairs flagged at
each detector's default threshold (and, for find_duplicates, at other inlier thresholds, with the share of
flagged pairs that the metadata files under one lesion: a lower bound on precision, since some cross-lesion
pairs are one lesion filed twice), the wall and CPU time of a cold run (empty cache) and a warm one, and what
merging the flagged pairs does to the splits.

    python bench/duplicates.py                    # all 10,015 images at 200x150, ~10 min on 2 cores
    python bench/duplicates.py --n 300 --dry-run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, Target, format_table, machine, print_targets  # noqa: E402

THRESHOLDS = (6, 8, 10, 12, 15, 20, 30)


def default_data() -> Path:
    return Path(os.environ.get("SKINLIB_TEST_DATA") or PROJECT.parent / "shared" / "data" / "ham10000")


def recall(ranked, lesions, multi, at: int) -> float:
    """Share of the images in ``multi`` with a same-lesion image among the first ``at`` of ``ranked[i]``."""
    hits = [any(lesions[j] == lesions[i] for j in ranked[i][:at]) for i in multi]
    return sum(hits) / max(1, len(hits))


def ranking_from_pairs(found, count: int):
    """Each image's partners in its candidate pairs, best first (inliers, then similarity)."""
    import numpy as np

    a, b = np.r_[found["a"], found["b"]], np.r_[found["b"], found["a"]]
    inliers, similarity = np.r_[found["inliers"], found["inliers"]], np.r_[found["similarity"], found["similarity"]]
    order = np.lexsort((-similarity, -inliers, a))
    ranked = [[] for _ in range(count)]
    for first, second in zip(a[order], b[order]):
        ranked[first].append(second)
    return ranked


def timed(function, *args, **kwargs):
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--images", default="images_200x150")
    parser.add_argument("--n", type=int, default=None, help="a class-stratified subset (default: all images)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--save-pairs", type=Path, default=None, help="write every candidate pair here (CSV)")
    parser.add_argument("--dry-run", action="store_true", help="tiny settings: checks the script, judges nothing")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    from skinlib.data import copies, duplicates, load_metadata, split, subset
    from skinlib.data.splits import duplicate_groups

    meta = load_metadata(args.data, images=args.images)
    if args.n:
        meta = subset(meta, args.n, seed=0).reset_index(drop=True)
    lesions = meta["lesion_id"].to_numpy()
    multi = np.flatnonzero(meta.groupby("lesion_id")["image_id"].transform("size").to_numpy() > 1)
    print(f"Same-lesion partner retrieval on {len(meta)} images ({args.images}), {len(multi)} with another photo "
          f"of their lesion\nMachine: {machine()}\n")

    def copy_search():
        embeddings = copies.embed(meta, workers=args.workers, progress=False)
        return embeddings, copies.copy_candidates(embeddings, progress=False)

    (embeddings, copy_pairs), copy_wall, copy_cpu = timed(copy_search)
    order, _ = copies.nearest_neighbours(embeddings, k=5, progress=False)
    scores = copies.pair_similarity(embeddings, np.repeat(np.arange(len(meta)), order.shape[1]), order.ravel())
    ranked_copy = np.take_along_axis(order, np.argsort(-scores.reshape(order.shape), axis=1), axis=1)
    copy_flag = copy_pairs["similarity"] >= duplicates.DUPLICATE_THRESHOLD
    copy_cross = int((copy_flag & (lesions[copy_pairs["a"]] != lesions[copy_pairs["b"]])).sum())

    with tempfile.TemporaryDirectory(prefix="skinlib-bench-duplicates-") as cache:
        everything = dict(threshold=0, copy_threshold=-1.0, cache_dir=cache, workers=args.workers, progress=False)
        all_pairs, cold_wall, cold_cpu = timed(duplicates.find_duplicates, meta, **everything)
        _, warm_wall, warm_cpu = timed(duplicates.find_duplicates, meta, **everything)
        flagged = duplicates.find_duplicates(meta, cache_dir=cache, progress=False)
    if args.save_pairs:
        all_pairs.to_csv(args.save_pairs, index=False)
    position = pd.Series(np.arange(len(meta)), index=meta["image_id"])
    found = {"a": position[all_pairs["image_id_a"]].to_numpy(), "b": position[all_pairs["image_id_b"]].to_numpy(),
             "inliers": all_pairs["inliers"].to_numpy(), "similarity": all_pairs["similarity"].to_numpy()}
    ranked_new = ranking_from_pairs(found, len(meta))
    same = lesions[found["a"]] == lesions[found["b"]]

    rows = [["copy search alone (before)", recall(ranked_copy, lesions, multi, 1),
             recall(ranked_copy, lesions, multi, 5), copy_cross, f"{copy_wall:.0f} s ({copy_cpu:.0f} CPU-s)",
             "n/a (result not cached here)"],
            [f"find_duplicates (inliers >= {duplicates.INLIER_THRESHOLD})", recall(ranked_new, lesions, multi, 1),
             recall(ranked_new, lesions, multi, 5), int((~flagged["same_lesion"]).sum()),
             f"{cold_wall:.0f} s ({cold_cpu:.0f} CPU-s)", f"{warm_wall:.2f} s ({warm_cpu:.2f} CPU-s)"]]
    print(format_table(["detector", "recall@1", "recall@5", "cross-lesion pairs flagged", "cold time", "warm time"],
                       rows))
    print(f"Candidate pairs: {len(found['a'])}; images with a same-lesion candidate: "
          f"{np.mean([any(lesions[j] == lesions[i] for j in ranked_new[i]) for i in multi]):.3f}")
    print(f"Inliers of candidate pairs: same lesion median {np.median(found['inliers'][same]):.0f}, "
          f"different lesions median {np.median(found['inliers'][~same]):.0f}, 99th percentile "
          f"{np.quantile(found['inliers'][~same], 0.99):.0f}, 99.9th {np.quantile(found['inliers'][~same], 0.999):.0f}")

    threshold_rows = []
    for threshold in THRESHOLDS:
        flag = found["inliers"] >= threshold
        threshold_rows.append([threshold, int(flag.sum()), int((flag & ~same).sum()),
                               float(same[flag].mean()) if flag.any() else float("nan")])
    print("\nInlier threshold (re-take criterion alone):")
    print(format_table(["inliers >=", "pairs flagged", "cross-lesion", "same-lesion share (precision lower bound)"],
                       threshold_rows))

    groups = duplicate_groups(meta, flagged)
    parts = split(meta, "study", seed=0)
    partner = pd.concat([flagged[["image_id_a", "image_id_b"]],
                         flagged[["image_id_b", "image_id_a"]].set_axis(["image_id_a", "image_id_b"], axis=1)])
    cross = partner[partner["image_id_a"].map(meta.set_index("image_id")["lesion_id"])
                    != partner["image_id_b"].map(meta.set_index("image_id")["lesion_id"])]
    train_ids = set(parts.train["image_id"])
    test_leak = set(cross.loc[cross["image_id_a"].isin(set(parts.test["image_id"]))
                              & cross["image_id_b"].isin(train_ids), "image_id_a"])
    lesion_leak = set(parts.test.loc[parts.test["lesion_id"].isin(set(parts.train["lesion_id"])), "image_id"])
    print(f"\nMerging the {len(flagged)} flagged pairs ({int((~flagged['same_lesion']).sum())} cross-lesion): "
          f"{meta['lesion_id'].nunique()} lesions -> {groups.nunique()} groups "
          f"({meta['lesion_id'].nunique() - groups.nunique()} merges; "
          f"{int((meta.groupby(groups)['lesion_id'].nunique() > 1).sum())} groups join several lesion ids)")
    print(f"Study split (seed 0): {len(test_leak)} of {len(parts.test)} test images have a cross-lesion "
          f"near-duplicate in training, {len(test_leak - lesion_leak)} of them with no photo of their own lesion "
          f"there ({len(lesion_leak)} share a lesion_id with training)")

    targets = [Target("recall@1", recall(ranked_new, lesions, multi, 1), 0.75),
               Target("cross-lesion pairs flagged", float((~flagged["same_lesion"]).sum()), 500, at_least=False),
               Target("cold minutes", cold_wall / 60, 12, at_least=False)]
    return 0 if print_targets(targets, dry_run=args.dry_run) else 1


if __name__ == "__main__":
    sys.exit(main())
