"""Subgroup metrics of an exported model on a split's test set: who the one number hides.

    python run_all.py --profile full --images images_200x150 --protocol grouped --only 02 \\
        -p recipe=corrected -p epochs=10 --out /tmp/sg-02
    python bench/subgroup_table.py /tmp/sg-02/models/02_baseline_cnn.keras --data /work/shared/data/ham10000 \\
        --images images_200x150 --protocol grouped --val-size 0.2

Rebuilds the run's split (same protocol, seed and validation share; near-duplicates merged with
``data.find_duplicates`` as the notebooks do), predicts the test images at the model card's input size with
``skinlib.export.load``, prints the overall accuracy and balanced accuracy (to check them against the run's
record), then ``evaluate.subgroups``' table and gaps (intervals resample lesions). The image source comes from
the Dataverse metadata in ``--data`` when present.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import data_parser  # puts the project on sys.path
from sklearn import metrics

from skinlib import data, evaluate, export, provenance


def main(argv=None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("model", type=Path, help="a .keras file written by skinlib.export")
    parser.add_argument("--protocol", default="grouped")
    parser.add_argument("--source", default=None, help="the held-out source of --protocol source_out")
    parser.add_argument("--val-size", type=float, default=0.2)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples per interval")
    args = parser.parse_args(argv)

    data_dir, images = data.locate(args.data, args.images)
    meta = data.load_metadata(data_dir, images=images)
    with_source = provenance.attach(meta, data_dir)
    meta = meta if with_source is None else with_source
    duplicates = data.find_duplicates(meta) if args.protocol != "study" else None
    parts = data.split(meta, args.protocol, seed=args.seed, val_size=args.val_size, duplicates=duplicates,
                       source=args.source)
    model = export.load(args.model)
    size = tuple(export.model_card(model)["image_size"])
    proba = evaluate.predict(model, data.load_images(parts.test, size=size))
    labels = parts.test["label"].to_numpy()
    predicted = proba.argmax(axis=1)
    print(f"{args.model} on the {args.protocol} test set (seed {args.seed}): {len(labels):,} images, "
          f"accuracy {metrics.accuracy_score(labels, predicted):.4f}, balanced accuracy "
          f"{metrics.balanced_accuracy_score(labels, predicted):.4f}")
    result = evaluate.subgroups(labels, proba, parts.test, n_bootstrap=args.bootstrap, seed=args.seed)
    columns = ["attribute", "group", "images", "lesions", "balanced_accuracy", "balanced_accuracy_low",
               "balanced_accuracy_high", "roc_auc_macro", "melanoma_sensitivity", "melanoma_sensitivity_low",
               "melanoma_sensitivity_high", "melanoma_specificity"]
    print(result.table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(result.gaps.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for note in result.notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
