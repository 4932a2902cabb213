"""What an unseen image source costs: a source-out model against the grouped cross-validation's fold models, on the
same images of the held-out source.

    python run_all.py --only 02 --protocol source_out -p 'source=vidir_molemax|rosendahl' -p recipe=corrected \\
        --out runs/source-out
    python run_all.py --only 02 --protocol grouped --folds 5 --seeds 0 -p recipe=corrected --out runs/cv
    python bench/source_shift.py runs/source-out/source_out/corrected/source=* --cv runs/cv/grouped/corrected/seed0

Each source-out run tested on every image of its held-out source, trained on the other three sources. The
cross-validation's folds tested every image once, each by a model that trained on the other folds, which hold the
rest of that source. Both are read from the runs' test predictions (``predictions/<notebook>.csv``), so nothing is
trained or predicted here. Per held-out source the script prints balanced accuracy over the classes the source has
and accuracy, each way, with 95 % intervals resampling lesions, the paired difference (source held out minus
cross-validation, the same lesions resampled for both), and the training-set sizes read from the records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _common import PROJECT  # noqa: F401  (puts the project on sys.path)

from skinlib import bootstrap, outputs
from skinlib.classes import CLASSES

METRICS = (("balanced_accuracy", bootstrap.balanced_accuracy), ("accuracy", bootstrap.accuracy))


def fold_predictions(cv: Path, notebook: str) -> tuple[pd.DataFrame, list[int]]:
    """The folds' test predictions of one cross-validation seed folder, one row per image, and each fold's
    training-set size."""
    folds = sorted(p for p in cv.glob("fold*") if p.is_dir() and p.name[4:].isdigit())
    if not folds:
        raise SystemExit(f"--cv {cv}: no fold<j> folders; give a run_all --folds output's seed folder, e.g. "
                         "runs/cv/grouped/corrected/seed0")
    tables, sizes = [], []
    for fold in folds:
        try:
            tables.append(outputs.read_predictions(fold, notebook))
            sizes.append(outputs.read_record(fold, notebook)["data"]["train"]["total"])
        except FileNotFoundError as error:
            raise SystemExit(str(error)) from None
    pooled = pd.concat(tables, ignore_index=True)
    if pooled["image_id"].duplicated().any():
        raise SystemExit(f"--cv {cv}: an image is in the test predictions of two folds; not one cross-validation")
    return pooled, sizes


def shift(held_out: pd.DataFrame, cv: pd.DataFrame, seed: int = 0, n_resamples: int = 1000) -> dict[str, float]:
    """Both ways' metrics on the held-out images, with lesion intervals, and their paired differences."""
    both = held_out.merge(cv, on="image_id", suffixes=("", "_cv"), validate="one_to_one")
    if len(both) != len(held_out):
        raise SystemExit(f"the cross-validation predicted {len(both)} of the {len(held_out)} held-out images; "
                         "run it on the same data")
    labels, lesions = both["label"].to_numpy(), both["lesion_id"].to_numpy()
    held = both[list(CLASSES)].to_numpy().argmax(axis=1)
    pooled = both[[f"{name}_cv" for name in CLASSES]].to_numpy().argmax(axis=1)
    row = {"images": len(both), "lesions": both["lesion_id"].nunique(),
           "classes": ", ".join(CLASSES[k] for k in sorted(set(labels)))}
    for name, metric in METRICS:
        for way, pred in (("held_out", held), ("cv", pooled)):
            row[f"{name}_{way}"] = float(metric(labels, pred))
            row[f"{name}_{way}_low"], row[f"{name}_{way}_high"] = bootstrap.bootstrap_interval(
                metric, labels, pred, groups=lesions, n_resamples=n_resamples, seed=seed)
        difference = bootstrap.paired_difference(metric)
        row[f"{name}_difference"] = float(difference(labels, held, pooled))
        row[f"{name}_difference_low"], row[f"{name}_difference_high"] = bootstrap.bootstrap_interval(
            difference, labels, held, pooled, groups=lesions, n_resamples=n_resamples, seed=seed)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("source_out", type=Path, nargs="+", help="run folders of --protocol source_out")
    parser.add_argument("--cv", type=Path, required=True, help="a grouped --folds run's seed folder (fold0, ...)")
    parser.add_argument("--notebook", default="02_baseline_cnn")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples per interval")
    args = parser.parse_args(argv)
    cv, cv_sizes = fold_predictions(args.cv, args.notebook)
    rows = []
    for folder in args.source_out:
        folder = next((p for p in sorted(folder.glob("seed*")) if p.is_dir()), folder)  # the point or its seed
        try:
            record = outputs.read_record(folder, args.notebook)
            held_out = outputs.read_predictions(folder, args.notebook)
        except FileNotFoundError as error:
            raise SystemExit(str(error)) from None
        if record["parameters"].get("protocol") != "source_out":
            raise SystemExit(f"{folder}: protocol {record['parameters'].get('protocol')!r}, expected source_out")
        rows.append({"source": record["parameters"]["source"], "train_images": record["data"]["train"]["total"],
                     **shift(held_out, cv, n_resamples=args.bootstrap)})
    table = pd.DataFrame(rows).set_index("source")
    print(f"cross-validation: {len(cv_sizes)} folds, {len(cv)} test images, training sets of "
          f"{min(cv_sizes)}-{max(cv_sizes)} images\n")
    for source, row in table.iterrows():
        print(f"{source}: {row['images']} images, {row['lesions']} lesions, classes {row['classes']}; "
              f"trained on {row['train_images']} images with it held out")
        for name, _ in METRICS:
            shown = [f"{way} {100 * row[f'{name}_{way}']:.1f} [{100 * row[f'{name}_{way}_low']:.1f}, "
                     f"{100 * row[f'{name}_{way}_high']:.1f}]" for way in ("held_out", "cv")]
            print(f"  {name}: {', '.join(shown)}; held out - cv {100 * row[f'{name}_difference']:+.1f} "
                  f"[{100 * row[f'{name}_difference_low']:+.1f}, {100 * row[f'{name}_difference_high']:+.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
