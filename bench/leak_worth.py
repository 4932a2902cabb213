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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("leaky", type=Path, help="run_all output folder of --protocol study")
    parser.add_argument("deleaked", type=Path, help="run_all output folder of --protocol study_deleaked")
    parser.add_argument("--notebook", default="02_baseline_cnn")
    parser.add_argument("--data", type=Path, default=None, help="HAM10000 folder (default: as run_all.py finds it)")
    parser.add_argument("--images", default=None, help="image folder inside --data, e.g. images_200x150")
    args = parser.parse_args(argv)
    data_dir, images = data.locate(args.data, args.images)
    meta = data.load_metadata(data_dir, images=images)
    gains = []
    for leaky_folder, deleaked_folder in zip(seed_folders(args.leaky), seed_folders(args.deleaked)):
        leaky, deleaked = (read_parameters(f, args.notebook) for f in (leaky_folder, deleaked_folder))
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
        table = ensemble.compare(test["label"].to_numpy(), probas, reference="leaky",
                                 groups=test["lesion_id"].to_numpy(), seed=leaky["seed"])
        print(f"\nseed {leaky['seed']}: {len(test)} test images, {test['lesion_id'].nunique()} lesions\n")
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
        gains.append(table.loc["deleaked"])
    print_mean_gains(gains, "the leaky model")
    return 0


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
