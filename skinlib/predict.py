"""``python -m skinlib predict IMAGE... --model FILE [--tta] [--json]``: classify images with an exported model.

For each image, the class probabilities sorted from most to least likely, the top class first with its
name. A missing or unreadable file is reported on stderr and skipped; the exit code is 1 if any image
failed, 0 otherwise (2 if the model cannot be loaded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skinlib.errors import ImageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``predict`` arguments to ``parser``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--model", required=True, metavar="FILE",
                        help="a .keras model written by skinlib.export.export")
    parser.add_argument("--tta", action="store_true",
                        help="average over flips and turns of each image (test-time augmentation)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as an RGB uint8 (H, W, 3) array, EXIF orientation applied; ImageError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"'{path}': no such file")
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"'{path}': not a readable image ({error})") from error


def classify(model, image: np.ndarray, classes: list[str], tta: bool = False) -> dict[str, float]:
    """Probabilities of one image by class code, most likely first."""
    from skinlib.evaluate import predict

    proba = predict(model, image[None], tta=tta or None, batch_size=1)[0]
    order = np.argsort(-proba, kind="stable")
    return {classes[k]: float(proba[k]) for k in order}


def _text(path: str, probabilities: dict[str, float], names: dict[str, str]) -> str:
    top = next(iter(probabilities))
    lines = [f"{path}: {top} ({names.get(top, top)}) {probabilities[top]:.3f}"]
    width = max(len(code) for code in probabilities)
    lines += [f"  {code:<{width}}  {p:.4f}  {names.get(code, code)}" for code, p in probabilities.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Classify ``args.images`` with ``args.model``; returns the exit code."""
    from skinlib import export

    try:
        model = export.load(args.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    card = export.model_card(model)
    classes, names = card["classes"], card["class_names"]
    results, failed = [], 0
    for path in args.images:
        try:
            probabilities = classify(model, read_image(path), classes, tta=args.tta)
        except ImageError as error:
            failed += 1
            print(f"error: {error}; skipped", file=sys.stderr)
            results.append({"image": str(path), "error": str(error)})
            continue
        top = next(iter(probabilities))
        results.append({"image": str(path), "top": top, "top_name": names.get(top, top),
                        "probabilities": probabilities})
        if not args.json:
            print(_text(str(path), probabilities, names), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m skinlib predict`` is the usual one)."""
    parser = argparse.ArgumentParser(prog="skinlib predict", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
