"""What the study's leak is worth to one notebook: its model trained on the study's split against the same
notebook trained without the test lesions (``--protocol study_deleaked``), scored on the same test images.

    python run_all.py --protocol study --only 02 --seeds 0,1,2 --out runs/leaky
    python run_all.py --protocol study_deleaked --only 02 --seeds 0,1,2 --out runs/deleaked
    python bench/leak_worth.py runs/leaky runs/deleaked --notebook 02_baseline_cnn

For each seed it loads both exported models, checks that the two records describe the same test set, and prints
``ensemble.compare``'s table: accuracy and balanced accuracy of each, the gain of the leaky model with a paired
95 % interval over lesions, and the clustered McNemar test. A last table gives the mean gain over the seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from skinlib import data, ensemble, evaluate, export, outputs, settings  # noqa: E402


def seed_folders(root: Path) -> list[Path]:
    """``root/seed<k>`` folders of a ``run_all.py --seeds`` run, or ``root`` itself for a single run."""
    found = [p for p in root.glob("seed*") if p.is_dir() and p.name[4:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[4:])) or [root]


def read_parameters(folder: Path, notebook: str) -> dict:
    try:
        return outputs.read_record(folder, notebook)["parameters"]
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None


def paired_runs(doc: str, first: tuple[str, str], second: tuple[str, str], argv=None):
    """The command line of a script comparing two run_all folders (``first`` and ``second``: argument name and
    help), ``--notebook``, ``--data`` and ``--images``: ``(args, metadata, [(first folder, its parameters,
    second folder, its parameters) per seed])``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    for name, help in (first, second):
        parser.add_argument(name, type=Path, help=help)
    parser.add_argument("--notebook", default="02_baseline_cnn")
    parser.add_argument("--data", type=Path, default=None, help="HAM10000 folder (default: as run_all.py finds it)")
    parser.add_argument("--images", default=None, help="image folder inside --data, e.g. images_200x150")
    args = parser.parse_args(argv)
    data_dir, images = data.locate(args.data, args.images)
    folders = zip(seed_folders(getattr(args, first[0])), seed_folders(getattr(args, second[0])))
    return args, data.load_metadata(data_dir, images=images), [
        (a, read_parameters(a, args.notebook), b, read_parameters(b, args.notebook)) for a, b in folders]


def main(argv=None) -> int:
    args, meta, runs = paired_runs(__doc__, ("leaky", "run_all output folder of --protocol study"),
                                   ("deleaked", "run_all output folder of --protocol study_deleaked"), argv)
    gains = []
    for leaky_folder, leaky, deleaked_folder, deleaked in runs:
        if (leaky["protocol"], deleaked["protocol"]) != ("study", "study_deleaked"):
            raise SystemExit(f"expected the protocols study and study_deleaked, got {leaky['protocol']} "
                             f"({leaky_folder}) and {deleaked['protocol']} ({deleaked_folder})")
        same = (*(key for key in settings.SPLIT_KEYS if key not in ("protocol", "merged_duplicates")), "image_size")
        if any(leaky[key] != deleaked[key] for key in same):
            raise SystemExit(f"{leaky_folder} and {deleaked_folder} differ in {', '.join(same)}: not the same test set")
        test = data.subset(meta, leaky["subset"], seed=leaky["seed"])
        test = data.split(test, protocol="study", seed=leaky["seed"], val_size=leaky["val_size"]).test
        images_test = data.load_images(test, size=tuple(leaky["image_size"]))
        probas = {name: evaluate.predict(export.load(folder / "models" / f"{args.notebook}.keras"), images_test)
                  for name, folder in (("leaky", leaky_folder), ("deleaked", deleaked_folder))}
        gains.append(compared(test, probas, "leaky", leaky["seed"]).loc["deleaked"])
    print_mean_gains(gains, "the leaky model")
    return 0


def compared(test, probas: dict, reference: str, seed: int) -> pd.DataFrame:
    """``ensemble.compare``'s table of the models' test probabilities against ``reference`` (paired intervals
    over lesions), printed under a line naming the seed and the test set."""
    table = ensemble.compare(test["label"].to_numpy(), probas, reference=reference,
                             groups=test["lesion_id"].to_numpy(), seed=seed)
    print(f"\nseed {seed}: {len(test)} test images, {test['lesion_id'].nunique()} lesions\n")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return table


def print_mean_gains(gains: list, what: str) -> None:
    """The mean ± sd over seeds of ``ensemble.compare``'s gains (rows of one table per seed), in points."""
    frame = pd.DataFrame(gains)
    print(f"\nGain of {what} over {len(frame)} seed(s), mean ± sd (percentage points):")
    for metric in ("accuracy_gain", "balanced_accuracy_gain"):
        values = 100 * frame[metric].to_numpy(dtype=float)
        spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
        print(f"  {metric}: {values.mean():+.1f} ± {spread:.1f}")


if __name__ == "__main__":
    sys.exit(main())
