"""How fast do N original 600x450 JPEGs become one (N, 192, 256, 3) uint8 array? Four ways, side by side.

* ``study``: the study's way: one process, full decode, LANCZOS resize, then one float32 array / 255.
* ``floor``: the least work that gives the same array: a thread pool doing Pillow's JPEG draft decode
  (DCT-domain downscale) and the same LANCZOS resize into a preallocated uint8 array, nothing else.
* ``cold``: ``skinlib.data.load_images`` with an empty cache folder (decode, write the cache, map it).
* ``warm``: ``skinlib.data.load_images`` again: a cache hit, every page of the array then read once.
* ``unchecked``: the same cache hit without the cache's checksum (:func:`skinlib.data.images.sample_checksum`,
  issue 22): ``load_images`` with that check switched off, as before, every page then read. Warm / unchecked is
  what the checksum costs a cache hit (target <= 1.05); the two run ``--hits`` times per round, in pairs whose
  order alternates, since a cache hit takes a fraction of a second and the page cache favours whoever runs second.

The 239 originals (``images_600x450`` of the shared data, or ``--data``/``$SKINLIB_TEST_DATA``) are repeated
to N files with distinct names in a temporary folder: real copies by default (distinct inodes, so the page
cache holds N files like a real dataset; ``--link hardlink`` shares the 239 inodes instead). The files are
read once before timing, so every method reads JPEGs from the page cache, not the disk.

Each method runs in a fresh process (:func:`_common.run_worker`) so that its peak memory is its own; the
methods take turns for ``--repeats`` rounds and the medians are compared. Targets (issue 7): cold >= 10x the
study and within 1.25x of the floor's time; warm >= 100x the study; skinlib's peak memory <= 1.5x the size
of the uint8 array.

    python bench/image_cache.py                 # N=2000, 3 rounds
    python bench/image_cache.py --n 20 --dry-run
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PROJECT, Target, format_table, machine, measure, median, print_targets,  # noqa: E402
                     report_result, run_worker)

METHODS = ("study", "floor", "cold", "warm", "unchecked")
ORIGINALS = "images_600x450"
PAGE = 4096


def default_data() -> Path:
    return Path(os.environ.get("SKINLIB_TEST_DATA") or PROJECT.parent / "shared" / "data" / "ham10000")


# ---------------------------------------------------------------------------------------------------
# The four ways (each runs inside a worker process)
# ---------------------------------------------------------------------------------------------------

def study_way(paths: list[str], size: tuple[int, int]):
    """The study: ``np.asarray(Image.open(p).resize(...))`` per file in one process, then float32 / 255."""
    import numpy as np
    from PIL import Image

    height, width = size
    images = [np.asarray(Image.open(p).resize((width, height), Image.Resampling.LANCZOS)) for p in paths]
    return np.asarray(images, dtype=np.float32) / np.float32(255)


def floor_way(paths: list[str], size: tuple[int, int], workers: int):
    """Bare parallel draft decode + LANCZOS resize into a preallocated array; nothing else."""
    import numpy as np
    from PIL import Image

    height, width = size
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)

    def work(row: int) -> None:
        with Image.open(paths[row]) as image:
            image.draft("RGB", (width, height))
            out[row] = np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, range(len(paths))))
    return out


def skinlib_way(paths: list[str], size: tuple[int, int], workers: int, cache_dir: str):
    """``skinlib.data.load_images`` with its on-disk cache in ``cache_dir``."""
    from skinlib.data import load_images

    return load_images(paths, size, cache_dir=cache_dir, workers=workers, progress=False)


def unchecked_way(paths: list[str], size: tuple[int, int], workers: int, cache_dir: str):
    """``load_images`` with the cache's checksum check switched off: the cache hit as it was before issue 22."""
    from skinlib.data import images

    images.cache_problem = lambda target, cached: None  # trust the cache, as before the checksum
    return images.load_images(paths, size, cache_dir=cache_dir, workers=workers, progress=False)


def touch(array) -> int:
    """Read one byte of every page, so that a lazily mapped array is really in memory."""
    import numpy as np

    return int(np.asarray(array).reshape(-1).view(np.uint8)[::PAGE].sum(dtype=np.uint64))


def worker(args) -> None:
    paths = sorted(str(p) for p in Path(args.folder).iterdir())
    size = tuple(args.size)
    import numpy as np  # noqa: F401  (imports happen before the measurement)
    import PIL.Image  # noqa: F401
    if args.worker in ("cold", "warm", "unchecked"):
        import skinlib.data  # noqa: F401
    with measure() as m:
        if args.worker == "study":
            array = study_way(paths, size)
        elif args.worker == "floor":
            array = floor_way(paths, size, args.workers)
        elif args.worker == "unchecked":
            array = unchecked_way(paths, size, args.workers, args.cache_dir)
        else:
            array = skinlib_way(paths, size, args.workers, args.cache_dir)
        touch(array)
    uint8 = (array * 255 + 0.5).astype("uint8") if array.dtype != "uint8" else array
    report_result({
        "method": args.worker, "n": len(paths), "seconds": m.seconds, "cpu_seconds": m.cpu_seconds,
        "peak_bytes": m.peak_bytes,
        "memory_method": m.memory_method, "array_bytes": int(array.nbytes), "dtype": str(array.dtype),
        "uint8_bytes": int(uint8.nbytes), "sha1": hashlib.sha1(np.ascontiguousarray(uint8)).hexdigest(),
    })


# ---------------------------------------------------------------------------------------------------
# The benchmark (parent process)
# ---------------------------------------------------------------------------------------------------

def make_folder(originals: list[Path], n: int, folder: Path, link: str) -> None:
    """``n`` files named ``ISIC_<k>_<original>.jpg``: copies (default) or hard links of the originals."""
    folder.mkdir(parents=True)
    for k in range(n):
        source = originals[k % len(originals)]
        target = folder / f"ISIC_{k:06d}_{source.name}"
        if link == "hardlink":
            os.link(source, target)
        else:
            shutil.copyfile(source, target)


def read_all(folder: Path) -> None:
    """Read every file once so that every method finds the JPEGs in the page cache."""
    for path in folder.iterdir():
        path.read_bytes()


def run(args) -> bool:
    originals_dir = Path(args.data) / ORIGINALS
    originals = sorted(originals_dir.glob("*.jpg"))
    if not originals:
        sys.exit(f"No JPEGs in '{originals_dir}': pass --data (or set SKINLIB_TEST_DATA) to the HAM10000 "
                 f"folder that holds {ORIGINALS}/.")
    repeats = 1 if args.dry_run and args.repeats is None else (args.repeats or 3)
    args.hits = 1 if args.dry_run and args.hits is None else (args.hits or 5)
    workers = args.workers or os.cpu_count() or 1
    scratch = Path(tempfile.mkdtemp(prefix="skinlib-bench-images-"))
    try:
        folder = scratch / "images"
        make_folder(originals, args.n, folder, args.link)
        read_all(folder)
        common = ["bench/image_cache.py", "--folder", str(folder), "--size", *map(str, args.size),
                  "--workers", str(workers)]
        results: dict[str, list[dict]] = {m: [] for m in METHODS}
        warm_cache = scratch / "cache-warm"
        for round_ in range(repeats):
            hits = [("warm", "unchecked")[::1 if (round_ * args.hits + k) % 2 == 0 else -1] for k in range(args.hits)]
            for method in [*METHODS[:3], *(m for pair in hits for m in pair)]:  # warm/unchecked pairs, alternating
                cache = warm_cache if method in ("warm", "unchecked") else scratch / f"cache-cold-{round_}"
                result = run_worker([*common, "--worker", method, "--cache-dir", str(cache)])
                results[method].append(result)
                if method == "cold":
                    if round_ == 0:
                        cache.rename(warm_cache)  # the first cold run leaves the cache the warm runs hit
                    else:
                        shutil.rmtree(cache, ignore_errors=True)
                print(f"  round {round_ + 1}/{repeats} {method:5s}: {result['n'] / result['seconds']:8.1f} img/s, "
                      f"peak +{result['peak_bytes'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return summarize(args, results, repeats, workers)


def summarize(args, results: dict[str, list[dict]], repeats: int, workers: int) -> bool:
    n = results["study"][0]["n"]
    seconds = {m: median(r["seconds"] for r in results[m]) for m in METHODS}
    cpu = {m: median(r.get("cpu_seconds") for r in results[m]) for m in METHODS}
    peak = {m: median(r["peak_bytes"] for r in results[m]) for m in METHODS}
    array_bytes = results["floor"][0]["uint8_bytes"]
    labels = {
        "study": "study (1 process, full decode, LANCZOS, float32/255)",
        "floor": f"floor ({workers} threads, draft decode + LANCZOS)",
        "cold": "skinlib load_images, cold (no cache)",
        "warm": "skinlib load_images, warm (cache hit, all pages read)",
        "unchecked": "warm without the checksum (the cache hit before issue 22)",
    }
    rows = [[labels[m], seconds["study"] / seconds[m], seconds["floor"] / seconds[m], cpu["study"] / cpu[m],
             cpu["floor"] / cpu[m], peak[m] / array_bytes] for m in METHODS]
    print()
    print(f"Image cache: {n} x 600x450 JPEG -> ({n}, {args.size[0]}, {args.size[1]}, 3) uint8; "
          f"median of {repeats} round(s), each method in a fresh process")
    print(f"Machine: {machine()}")
    print(f"Files: {'copies' if args.link == 'copy' else 'hard links'} of the {ORIGINALS} originals, read once "
          f"before timing (page cache warm)")
    print()
    print(format_table(["method", "speed vs study", "speed vs floor", "CPU-time efficiency vs study",
                        "CPU-time efficiency vs floor", "peak memory / uint8 array"], rows))
    print()
    print("Speed = 1 / wall time; CPU-time efficiency = 1 / CPU time of the process (all threads), which is "
          "what each image costs the machine and is steadier than wall time on a loaded machine.")
    print("For reference only (absolute, noisy): "
          + ", ".join(f"{m} {n / seconds[m]:.0f} img/s ({1000 * cpu[m] / n:.2f} CPU-ms/img)" for m in METHODS)
          + f"; uint8 array {array_bytes / 2**20:.0f} MiB; peak memory = "
          f"{results['floor'][0]['memory_method']} (resident set incl. mapped cache pages), fresh process each.")
    same = len({r["sha1"] for m in ("floor", "cold", "warm", "unchecked") for r in results[m]}) == 1
    print(f"Floor, cold, warm and unchecked arrays identical: {'yes' if same else 'NO'}")
    print(f"Checksum cost on a cache hit, measured side by side: warm / unchecked wall time "
          f"{seconds['warm'] / seconds['unchecked']:.3f}, CPU time {cpu['warm'] / cpu['unchecked']:.3f} "
          f"(median of {len(results['warm'])} runs each; per pair: " + ", ".join(
              f"{w['seconds'] / u['seconds']:.2f}" for w, u in zip(results["warm"], results["unchecked"])) + ")")
    targets = [
        Target("cold speed / study speed", seconds["study"] / seconds["cold"], 10.0),
        Target("cold time / floor time", seconds["cold"] / seconds["floor"], 1.25, at_least=False),
        Target("warm speed / study speed", seconds["study"] / seconds["warm"], 100.0),
        Target("cold peak memory / uint8 array", peak["cold"] / array_bytes, 1.5, at_least=False),
        Target("warm peak memory / uint8 array", peak["warm"] / array_bytes, 1.5, at_least=False),
        Target("warm time / unchecked warm time (checksum cost)", seconds["warm"] / seconds["unchecked"], 1.05,
               at_least=False),
    ]
    held = print_targets(targets, args.dry_run) and same
    cores_needed = 10.0 / (cpu["study"] / cpu["cold"])
    print(f"Cold speed / study speed is bounded by (study CPU time / cold CPU time) x (cores it can use): "
          f"{cpu['study'] / cpu['cold']:.2f} x {workers} = {cpu['study'] / cpu['cold'] * workers:.1f} here; "
          f"10x needs about {cores_needed:.1f} idle cores at this per-image cost.")
    return held


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--data", default=str(default_data()), help="HAM10000 folder holding images_600x450/")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of all methods (default 3; 1 dry)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: all cores)")
    parser.add_argument("--hits", type=int, default=None, help="warm/unchecked pairs per round (default 5; 1 dry)")
    parser.add_argument("--link", choices=("copy", "hardlink"), default="copy")
    parser.add_argument("--dry-run", action="store_true", help="one round; targets shown but not judged")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
