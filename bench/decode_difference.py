"""How far skinlib's image decoding is from the study's: JPEG draft (DCT) scaling before the LANCZOS resize,
against a full decode then LANCZOS (what the study did), on the original 600x450 images.

    python bench/decode_difference.py [--data ../shared/data/ham10000]

Prints the mean, 99th percentile and largest absolute pixel difference (0..255) at the study's two input sizes.
The fidelity table (``skinlib.fidelity``) quotes these numbers.
"""

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from skinlib.data.images import decode_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("SKINLIB_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared/data/ham10000"
    parser.add_argument("--data", type=Path, default=Path(default))
    args = parser.parse_args()
    paths = sorted((args.data / "images_600x450").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no original images in {args.data / 'images_600x450'}")
    for size in ((192, 256), (64, 64)):
        diffs = []
        for path in paths:
            ours = decode_image(path, size).astype(np.int16)
            with Image.open(path) as image:
                theirs = np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.Resampling.LANCZOS))
            diffs.append(np.abs(ours - theirs.astype(np.int16)))
        d = np.stack(diffs)
        print(f"{size[0]}x{size[1]}, {len(paths)} images: mean abs difference {d.mean():.3f}, "
              f"99th percentile {np.percentile(d, 99):.1f}, max {d.max()} (of 255)")


if __name__ == "__main__":
    main()
