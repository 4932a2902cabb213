"""Shared by the benchmarks that compare run_all.py output folders on the same test images (``leak_worth.py``,
``metadata_worth.py``): the command line, the per-seed folders and their records, ``ensemble.compare``'s paired
table, and the mean gains over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from skinlib import bootstrap, data, ensemble, outputs


def seed_folders(root: Path) -> list[Path]:
    """``root/seed<k>`` folders of a ``run_all.py --seeds`` run, or ``root`` itself for a single run."""
    found = [p for p in root.glob("seed*") if p.is_dir() and p.name[4:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[4:])) or [root]


def read_parameters(folder: Path, notebook: str) -> dict:
    try:
        return outputs.read_record(folder, notebook)["parameters"]
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None


def folders_command(doc: str, folders, argv=None):
    """The command line of a script comparing run_all folders: ``folders`` are (name, help, optional) triples,
    then ``--notebook``, ``--data`` and ``--images``; returns ``(args, metadata)``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    for name, help, optional in folders:
        parser.add_argument(name, type=Path, help=help, **({"nargs": "?", "default": None} if optional else {}))
    parser.add_argument("--notebook", default="02_baseline_cnn")
    parser.add_argument("--data", type=Path, default=None, help="HAM10000 folder (default: as run_all.py finds it)")
    parser.add_argument("--images", default=None, help="image folder inside --data, e.g. images_200x150")
    args = parser.parse_args(argv)
    data_dir, images = data.locate(args.data, args.images)
    return args, data.load_metadata(data_dir, images=images)


def paired_runs(doc: str, first: tuple[str, str], second: tuple[str, str], argv=None):
    """:func:`folders_command` for two folders (``first`` and ``second``: argument name and help):
    ``(args, metadata, [(first folder, its parameters, second folder, its parameters) per seed])``."""
    args, meta = folders_command(doc, [(*first, False), (*second, False)], argv)
    folders = zip(seed_folders(getattr(args, first[0])), seed_folders(getattr(args, second[0])))
    return args, meta, [(a, read_parameters(a, args.notebook), b, read_parameters(b, args.notebook))
                        for a, b in folders]


def compared(test, probas: dict, reference: str, seed: int, title: str = "") -> pd.DataFrame:
    """``ensemble.compare``'s table of the models' test probabilities against ``reference`` (paired intervals
    over lesions), printed under a line naming the seed and the test set (and ``title``)."""
    table = ensemble.compare(test["label"].to_numpy(), probas, reference=reference,
                             groups=test["lesion_id"].to_numpy(), seed=seed)
    print(f"\nseed {seed}: {len(test)} test images, {test['lesion_id'].nunique()} lesions{title}\n")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return table


def macro_f1_gain(test, reference, other, seed: int) -> dict[str, float]:
    """``reference``'s macro F1 minus ``other``'s (test probabilities of two models on the same images), with a
    paired 95 % percentile interval resampling lesions (``ensemble.compare`` gives accuracy and balanced accuracy);
    printed, and returned as ``macro_f1_gain``, ``_low``, ``_high``."""
    labels = test["label"].to_numpy()
    pair = (labels, np.asarray(reference).argmax(axis=1), np.asarray(other).argmax(axis=1))
    gain = bootstrap.paired_difference(bootstrap.macro_f1)  # over the classes present, as compare's macro_f1
    values = bootstrap.bootstrap_values(gain, *pair, groups=test["lesion_id"].to_numpy(), seed=seed)
    low, high = bootstrap.percentile_interval(values)
    found = {"macro_f1_gain": float(gain(*pair)), "macro_f1_gain_low": low, "macro_f1_gain_high": high}
    print(f"macro_f1_gain: {100 * found['macro_f1_gain']:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}] "
          "(paired, lesions resampled)")
    return found


def print_mean_gains(gains: list, what: str) -> None:
    """The mean ± sd over seeds of ``ensemble.compare``'s gains (rows of one table per seed), in points."""
    frame = pd.DataFrame(gains)
    print(f"\nGain of {what} over {len(frame)} seed(s), mean ± sd (percentage points):")
    for metric in ("accuracy_gain", "balanced_accuracy_gain", "macro_f1_gain"):
        if metric not in frame:
            continue
        values = 100 * frame[metric].to_numpy(dtype=float)
        spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
        print(f"  {metric}: {values.mean():+.1f} ± {spread:.1f}")
