"""How well the pixels alone tell the image source: the source shortcut of HAM10000, measured.

    python bench/source_probe.py --data /work/shared/data/ham10000 --images images_200x150

Prints the images per source and class (with the nevus share), then the out-of-fold balanced accuracy of a
logistic regression on colour statistics (``skinlib.provenance.probe``: lesion-grouped 5-fold cross-validation)
against chance (1 / sources) and its accuracy against always answering the largest source; once on all images,
once on the nevi only (so the source cannot be read off the diagnosis). The same probe on the patient's metadata
(age, sex, site, encoded as the fused models take it) says how much of the source a fused model can read there.
Images are decoded once at ``--size`` and cached by ``skinlib.data.load_images``.
"""

from __future__ import annotations

import itertools
import sys
import time

from _common import data_parser, format_table, machine  # puts the project on sys.path

from skinlib import data, provenance
from skinlib.data import encoding

METADATA = ("age", "sex", "localization")


def main(argv=None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--size", type=int, nargs=2, default=(75, 100), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--subset", type=int, default=None, help="a class-stratified subset (a quick look)")
    args = parser.parse_args(argv)

    data_dir, images = data.locate(args.data, args.images)
    meta = provenance.attach(data.load_metadata(data_dir, images=images), data_dir)
    if meta is None:
        print(provenance.UNAVAILABLE)
        return 1
    meta = data.subset(meta, args.subset, seed=args.seed)
    print(machine())
    print(provenance.by_diagnosis(meta).to_string(float_format=lambda v: f"{v:.3f}"))
    arrays = data.load_images(meta, size=tuple(args.size))
    vectors = encoding.encode(meta, METADATA)
    rows = []
    for inputs, within in itertools.product(("colour", "metadata"), (None, "nv")):
        start = time.perf_counter()
        given = {"images": arrays} if inputs == "colour" else {"features": vectors}
        result = provenance.probe(meta, folds=args.folds, seed=args.seed, within=within, **given)
        low, high = result.interval
        rows.append([inputs, within or "all", result.images, result.lesions, f"{result.balanced_accuracy:.3f}",
                     f"[{low:.3f}, {high:.3f}]", f"{result.chance:.3f}", f"{result.accuracy:.3f}",
                     f"{result.majority_rate:.3f} ({result.majority_source})",
                     " ".join(f"{k} {v:.2f}" for k, v in result.recall().items()),
                     f"{time.perf_counter() - start:.0f}"])
    print(f"\nSource probe: logistic regression on colour statistics at {args.size[0]}x{args.size[1]}, or on the "
          f"metadata ({', '.join(METADATA)}, as the fused models take it), {args.folds} lesion-grouped folds "
          "(out-of-fold predictions)")
    print(format_table(["from", "images of", "images", "lesions", "balanced acc.", "95 % CI (lesions)", "chance",
                        "accuracy", "majority rate", "recall per source", "s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
