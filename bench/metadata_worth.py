"""What the patient's metadata is worth to one notebook: its image-only model against the same notebook trained
with ``-p 'metadata=["age","sex","localization"]'``, scored on the same test images.

    python run_all.py --protocol grouped --only 02 -p recipe=corrected --seeds 0,1,2 --out runs/image
    python run_all.py --protocol grouped --only 02 -p recipe=corrected --seeds 0,1,2 \\
        -p 'metadata=["age","sex","localization"]' --out runs/fused
    python bench/metadata_worth.py runs/image runs/fused --notebook 02_baseline_cnn

For each seed it checks that the two records describe the same test set, rebuilds it, predicts with both exported
models (the fused one with the test images' metadata) and prints ``ensemble.compare``'s table with the fused model
as the reference: its gain in accuracy and balanced accuracy with a paired 95 % interval over lesions, and the
clustered McNemar test. A last line gives the mean gain over the seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from leak_worth import print_mean_gains, read_parameters, seed_folders  # noqa: E402  (bench/ is the script's folder)

from skinlib import data, ensemble, evaluate, export, settings  # noqa: E402


def test_part(meta: pd.DataFrame, parameters: dict) -> pd.DataFrame:
    """The test frame of a record's split settings."""
    meta = data.subset(meta, parameters["subset"], seed=parameters["seed"])
    duplicates = data.find_duplicates(meta) if parameters["merged_duplicates"] else None
    return data.split(meta, protocol=parameters["protocol"], seed=parameters["seed"],
                      val_size=parameters["val_size"], duplicates=duplicates).test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("image_only", type=Path, help="run_all output folder without metadata")
    parser.add_argument("fused", type=Path, help="run_all output folder with -p metadata=[...]")
    parser.add_argument("--notebook", default="02_baseline_cnn")
    parser.add_argument("--data", type=Path, default=None, help="HAM10000 folder (default: as run_all.py finds it)")
    parser.add_argument("--images", default=None, help="image folder inside --data, e.g. images_200x150")
    args = parser.parse_args(argv)
    data_dir, images = data.locate(args.data, args.images)
    meta = data.load_metadata(data_dir, images=images)
    gains = []
    for plain_folder, fused_folder in zip(seed_folders(args.image_only), seed_folders(args.fused)):
        plain, fused = (read_parameters(f, args.notebook) for f in (plain_folder, fused_folder))
        if plain.get("metadata") or not fused.get("metadata"):
            raise SystemExit(f"expected {plain_folder} without metadata and {fused_folder} with, got "
                             f"{plain.get('metadata')} and {fused.get('metadata')}")
        same = (*settings.SPLIT_KEYS, "image_size")
        if any(plain[key] != fused[key] for key in same):
            raise SystemExit(f"{plain_folder} and {fused_folder} differ in {', '.join(same)}: not the same test set")
        test = test_part(meta, plain)
        images_test = data.load_images(test, size=tuple(plain["image_size"]))
        vectors = data.metadata_vectors({"test": test}, fused["metadata"], names=("test",))["test"]
        probas = {name: evaluate.predict(export.load(folder / "models" / f"{args.notebook}.keras"), images_test,
                                         tta=parameters["tta"], metadata=vectors if parameters["metadata"] else None)
                  for name, folder, parameters in (("fused", fused_folder, fused), ("image_only", plain_folder, plain))}
        table = ensemble.compare(test["label"].to_numpy(), probas, reference="fused",
                                 groups=test["lesion_id"].to_numpy(), seed=plain["seed"])
        print(f"\nseed {plain['seed']}: {len(test)} test images, {test['lesion_id'].nunique()} lesions\n")
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
        gains.append(table.loc["image_only"])
    print_mean_gains(gains, "the fused model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
