"""``python -m skinlib predict IMAGE|FOLDER... --model FILE [--age YEARS] [--sex SEX] [--site SITE] [--tta]
[--json] [--verbose]``: classify images with an exported model.

A model fused with metadata (``models.build(..., metadata=fields)``; its card names the fields) takes the
patient's ``--age``, ``--sex`` and ``--site`` (body site, as HAM10000's ``localization``), the same for every
image of the call. Each is optional: one left out is encoded as missing (age unknown, sex and site "unknown",
the code the model saw for the 57 HAM10000 images without an age), and a note on stderr says so. An image-only
model refuses them.

For each image, the class probabilities sorted from most to least likely, the top class first with its
name. A folder stands for every .jpg, .jpeg and .png directly inside it. A missing or unreadable image
is reported on stderr (and, with --json, as an entry with an "error") and the others are still
classified; the exit code is 1 if any image failed, 0 otherwise, 2 if the model cannot be used, 130
when interrupted (the images classified so far are still printed).

The checks that need no deep-learning framework (does the model file exist, is it a .keras archive, do
the images exist) run before TensorFlow is imported, so a wrong path is reported at once. TensorFlow's
and absl's log lines are hidden unless --verbose (what native code writes to stderr is dropped while the
model loads and runs; skinlib's own messages still show).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skinlib.data import encoding
from skinlib.errors import ImageError, image_too_large
from skinlib.pixels import MIN_SIDE, eight_bit

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EXPORT_HINT = "pass --model the .keras file written by skinlib.export.export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``predict`` arguments to ``parser``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, ...) or folders (every .jpg, .jpeg, .png directly inside)")
    parser.add_argument("--model", required=True, metavar="FILE",
                        help="a .keras model written by skinlib.export.export")
    parser.add_argument("--age", type=float, metavar="YEARS", help="the patient's age (a metadata model only)")
    parser.add_argument("--sex", choices=encoding.SEXES, help="the patient's sex (a metadata model only)")
    parser.add_argument("--site", choices=encoding.SITES, metavar="SITE",
                        help=f"the lesion's body site (a metadata model only): {', '.join(encoding.SITES)}")
    parser.add_argument("--tta", action="store_true",
                        help="average over flips and turns of each image (test-time augmentation)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show TensorFlow's own log lines (hidden by default; use it when a model "
                             "fails to load for no clear reason)")


def model_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be an exported model, found without importing Keras; None if it may be one."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.keras"))
        where = f": one of the .keras files inside it ({', '.join(inside[:5])})" if inside else ""
        return f"model '{path}' is a folder, not a model file; {EXPORT_HINT}{where}"
    if not path.exists():
        return f"model file '{path}' not found; {EXPORT_HINT}"
    if not path.is_file():
        return f"model '{path}' is not a regular file; {EXPORT_HINT}"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "config.json" in archive.namelist():
                    return None
            return (f"model file '{path}' is a zip archive but not a Keras model archive (it has no "
                    f"config.json); {EXPORT_HINT}")
        with open(path, "rb") as handle:
            magic = handle.read(8)
    except (OSError, zipfile.BadZipFile) as error:
        return f"model file '{path}' cannot be read ({error})"
    what = ("it is an HDF5 file (a legacy .h5 model): load it with Keras and export it with "
            "skinlib.export.export" if magic.startswith(b"\x89HDF") else
            "it may be truncated, or another kind of file renamed: export the model again with "
            "skinlib.export.export")
    return f"model file '{path}' is not a Keras model archive (a .keras file is a zip archive; this one is not): {what}"


def expand(arguments: list[str]) -> Iterator[tuple[str, str | None]]:
    """(image path, problem or None) for each argument; a folder gives its images, sorted by name."""
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                yield argument, (f"'{argument}' is a folder with no .jpg, .jpeg or .png file directly in it; "
                                 f"pass image files, or a folder that holds them")
            yield from ((str(p), None) for p in found)
        elif not path.exists():
            yield argument, f"'{argument}': no such file"
        else:
            yield argument, None


def read_image(path: str | Path) -> np.ndarray:
    """An image file as an RGB uint8 (H, W, 3) array, EXIF orientation applied, a 16-bit greyscale one brought to
    8 bits by its range (:func:`skinlib.pixels.eight_bit`); ImageError if unreadable or under ``MIN_SIDE`` pixels."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"'{path}' is a folder, not an image file")
    if not path.is_file():
        raise ImageError(f"'{path}': no such file")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(eight_bit(ImageOps.exif_transpose(image)).convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as error:  # an Exception, not an OSError
        raise image_too_large(path, error) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"'{path}': not a readable image ({error})") from error
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise ImageError(f"'{path}' is {pixels.shape[1]}x{pixels.shape[0]} pixels, smaller than the {MIN_SIDE}x"
                         f"{MIN_SIDE} minimum (skinlib.pixels.MIN_SIDE): too small to hold a lesion; pass the "
                         f"full photo")
    return pixels


def classify(model, image: np.ndarray, classes: list[str], tta: bool = False, metadata=None) -> dict[str, float]:
    """Probabilities of one image by class code, most likely first; ``metadata``: a fused model's (width,)
    vector (None: the missing-value code)."""
    from skinlib.evaluate import predict

    vectors = None if metadata is None else np.asarray(metadata)[None]
    proba = predict(model, image[None], tta=tta or None, batch_size=1, metadata=vectors)[0]
    order = np.argsort(-proba, kind="stable")
    return {classes[k]: float(proba[k]) for k in order}


def quiet_frameworks(verbose: bool) -> None:
    """Hide TensorFlow's C++ and absl log lines (call before importing Keras); no-op when ``verbose``."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import absl.logging  # ships with TensorFlow and JAX; importing it loads neither
    except ImportError:
        return
    absl.logging.set_verbosity(absl.logging.ERROR)


@contextlib.contextmanager
def native_stderr_hidden(active: bool) -> Iterator[None]:
    """Send what native code writes to file descriptor 2 (TensorFlow's absl and oneDNN lines, which
    TF_CPP_MIN_LOG_LEVEL does not all hide) to /dev/null, while Python's ``sys.stderr`` keeps writing to
    the real stderr. Only when ``sys.stderr`` is the process's own stderr (not under a test's capture)."""
    try:
        usable = active and sys.stderr is sys.__stderr__ and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        usable = False
    if not usable:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    console = os.fdopen(saved, "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = console
    try:
        yield
    finally:
        console.flush()
        os.dup2(saved, 2)
        sys.stderr = python_stderr
        console.close()


def _text(path: str, probabilities: dict[str, float], names: dict[str, str]) -> str:
    top = next(iter(probabilities))
    lines = [f"{path}: {top} ({names.get(top, top)}) {probabilities[top]:.3f}"]
    width = max(len(code) for code in probabilities)
    lines += [f"  {code:<{width}}  {p:.4f}  {names.get(code, code)}" for code, p in probabilities.items()]
    return "\n".join(lines)


def given_metadata(args: argparse.Namespace) -> dict:
    """``{field: value}`` of the metadata options given (checked, without the model)."""
    given = {name: getattr(args, option, None) for name, option in (("age", "age"), ("sex", "sex"),
                                                                     ("localization", "site"))}
    given = {name: value for name, value in given.items() if value is not None}
    encoding.encode_values(encoding.FIELDS, **given)  # a bad value fails before the model loads
    return given


def metadata_vector(card: dict, given: dict) -> np.ndarray | None:
    """The vector of ``given`` for the model of ``card`` (None: image only); notes the fields left missing."""
    fields = card.get("metadata") or []
    options = {"age": "--age", "sex": "--sex", "localization": "--site"}
    if not fields:
        if given:
            raise encoding.MetadataError(f"the model takes images only (exported without metadata): drop "
                                         f"{', '.join(options[name] for name in given)}")
        return None
    left_out = [options[name] for name in fields if name not in given]
    if left_out:
        print(f"note: {', '.join(left_out)} not given: encoded as missing (the model takes "
              f"{', '.join(options[name] for name in fields)})", file=sys.stderr)
    return encoding.encode_values(fields, **given)


def run(args: argparse.Namespace) -> int:
    """Classify ``args.images`` with ``args.model``; returns the exit code."""
    problem = model_problem(args.model)
    try:
        given = given_metadata(args)
    except encoding.MetadataError as error:
        problem = problem or str(error)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    inputs = list(expand(args.images))
    verbose = getattr(args, "verbose", False)
    results: list[dict] = []
    interrupted = False
    with native_stderr_hidden(not verbose):
        if any(problem is None for _, problem in inputs):
            quiet_frameworks(verbose)
            from skinlib import export

            try:
                model = export.load(args.model)
            except (FileNotFoundError, ValueError) as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            card = export.model_card(model)
            try:
                args.metadata_vector = metadata_vector(card, given)
            except encoding.MetadataError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        else:
            model = card = None  # nothing to classify: the model is not even loaded
        try:
            for path, problem in inputs:
                results.append(predict_one(model, card, path, problem, args))
        except KeyboardInterrupt:
            interrupted = True
            print(f"\nInterrupted: {len(results)} of {len(inputs)} images done.", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2), flush=True)
    if interrupted:
        return 130
    return 1 if any("error" in result for result in results) else 0


def predict_one(model, card: dict | None, path: str, problem: str | None, args: argparse.Namespace) -> dict:
    """The result entry of one image (printed at once in text mode); an ``error`` entry if it failed."""
    try:
        if problem:
            raise ImageError(problem)
        probabilities = classify(model, read_image(path), card["classes"], tta=args.tta,
                                 metadata=getattr(args, "metadata_vector", None))
    except Exception as error:  # one bad image must not cost the others their results
        message = str(error) if isinstance(error, ImageError) else \
            f"'{path}': cannot be classified ({type(error).__name__}: {error})"
        print(f"error: {message}; skipped", file=sys.stderr, flush=True)
        return {"image": str(path), "error": message}
    names = card["class_names"]
    top = next(iter(probabilities))
    if not args.json:
        print(_text(str(path), probabilities, names), flush=True)
    return {"image": str(path), "top": top, "top_name": names.get(top, top), "probabilities": probabilities}


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m skinlib predict`` is the usual one)."""
    parser = argparse.ArgumentParser(prog="skinlib predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
