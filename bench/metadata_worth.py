"""What the patient's metadata is worth to one notebook: its image-only model against the same notebook trained
with ``-p 'metadata=["age","sex","localization"]'``, scored on the same test images. One sweep trains both:

    python run_all.py --protocol grouped --only 02 -p recipe=corrected --seeds 0,1,2 \\
        -p 'metadata=None|["age","sex","localization"]' --out runs/metadata
    python bench/metadata_worth.py runs/metadata/grouped/corrected/metadata=None \\
        runs/metadata/grouped/corrected/metadata=age-sex-localization --notebook 02_baseline_cnn

For each seed it checks that the two records describe the same test set, rebuilds it, predicts with both exported
models (the fused one with the test images' metadata) and prints ``ensemble.compare``'s table with the fused model
as the reference: its gain in accuracy and balanced accuracy with a paired 95 % interval over lesions, and the
clustered McNemar test, then its gain in macro F1 with the same kind of interval. The last lines give the mean gains
over the seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from _paired import compared, macro_f1_gain, paired_runs, print_mean_gains  # noqa: E402  (bench/ is the script's folder)

from skinlib import data, evaluate, export, outputs, settings  # noqa: E402


def rebuilt_test(meta: pd.DataFrame, parameters: dict) -> pd.DataFrame:
    """The test frame of a record's split settings."""
    meta = data.subset(meta, parameters["subset"], seed=parameters["seed"])
    duplicates = data.find_duplicates(meta) if parameters["merged_duplicates"] else None
    return data.split(meta, protocol=parameters["protocol"], seed=parameters["seed"],
                      val_size=parameters["val_size"], duplicates=duplicates).test


def main(argv=None) -> int:
    args, meta, runs = paired_runs(__doc__, ("image_only", "run_all output folder without metadata"),
                                   ("fused", "run_all output folder with -p metadata=[...]"), argv)
    gains = []
    for plain_folder, plain, fused_folder, fused in runs:
        if plain.get("metadata") or not fused.get("metadata"):
            raise SystemExit(f"expected {plain_folder} without metadata and {fused_folder} with, got "
                             f"{plain.get('metadata')} and {fused.get('metadata')}")
        same = (*settings.SPLIT_KEYS, "image_size")
        if any(plain.get(key) != fused.get(key) for key in same):
            raise SystemExit(f"{plain_folder} and {fused_folder} differ in {', '.join(same)}: not the same test set")
        test = rebuilt_test(meta, plain)
        for folder in (plain_folder, fused_folder):  # the split rebuilt here must be the one each model was tested on
            tested = set(outputs.read_predictions(folder, args.notebook[:2])["image_id"])
            if tested != set(test["image_id"]):
                raise SystemExit(f"{folder}: its test set ({len(tested)} images) is not the split rebuilt here "
                                 f"({len(test)} images, {len(tested & set(test['image_id']))} in common): its "
                                 "training may hold images tested here; rerun it, or compare runs of one split")
        images_test = data.load_images(test, size=tuple(plain["image_size"]))
        vectors = data.metadata_vectors({"test": test}, fused["metadata"], names=("test",))["test"]
        probas = {name: evaluate.predict(export.load(folder / "models" / f"{args.notebook}.keras"), images_test,
                                         tta=parameters.get("tta"),  # records written before the parameter: None
                                         metadata=vectors if parameters.get("metadata") else None)
                  for name, folder, parameters in (("fused", fused_folder, fused), ("image_only", plain_folder, plain))}
        gain = compared(test, probas, "fused", plain["seed"]).loc["image_only"]
        gains.append({**gain, **macro_f1_gain(test, probas["fused"], probas["image_only"], plain["seed"])})
    print_mean_gains(gains, "the fused model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
