"""Variants of the corrected recipe on notebook 02's baseline CNN: test balanced accuracy and macro F1 per seed.

The setting is issue 12's: 64x64 images from images_200x150, the grouped split with near-duplicates merged,
val_size 0.2, the study's schedule (30 epochs, Adam(W) at 1e-3, plateau), batch 64. Each run is notebook 02's
calls (split, load, build, adapt, augmentation, set_trainable, train.fit, evaluate.predict) with one recipe.

    python bench/recipe_variants.py --variants corrected study "corrected:weight_decay=1e-4" --seeds 0 1 2

A variant is a recipe name, then optional ``:field=value`` changes separated by ``;``:

- any ``skinlib.recipes.Recipe`` field, e.g. ``weight_decay=1e-4``, ``monitor=val_loss``, ``balance=none``,
  ``label_smoothing=0.1``, ``augment=none``;
- ``augment=d4``: flips both ways and 90-degree turns only (the corrected pipeline without its affine jitter);
- ``patience=N`` or ``plateau=none``: the stage's ReduceLROnPlateau patience, or no plateau;
- ``ema=M``: an exponential moving average of the weights (Keras' ``use_ema``), used for validation and at the end.

Prints one row per run and a table of mean ± sd per variant; ``--out`` keeps the runs (a CSV and each stage's
training folder). About 5 minutes per run on 2 CPU cores. ``--dry-run``: 2 epochs on a 300-image subset.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import keras  # noqa: E402
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score  # noqa: E402

from runner import parse_value  # noqa: E402  (run_all.py's -p NAME=VALUE parser)
from skinlib import augment, data, evaluate, models, recipes, study, train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class EMARecipe(recipes.Recipe):
    """A recipe whose optimizers keep an exponential moving average of the weights."""

    ema_momentum: float = 0.99

    def make_optimizer(self, stage):
        optimizer = super().make_optimizer(stage)
        return optimizer.__class__.from_config({**optimizer.get_config(), "use_ema": True,
                                                "ema_momentum": self.ema_momentum})


def parse_variant(text: str, stage):
    """(recipe, augmentation spec or "d4", stage, extra callbacks) for ``name[:field=value;...]``."""
    name, _, changes = text.partition(":")
    recipe, augmentation, callbacks = recipes.get(name), None, []
    for change in filter(None, changes.split(";")):
        field, _, value = change.partition("=")
        if field == "augment" and value == "d4":
            augmentation = "d4"
        elif field == "patience":
            stage = dataclasses.replace(stage, plateau=dataclasses.replace(stage.plateau, patience=int(value)))
        elif field == "plateau" and value == "none":
            stage = dataclasses.replace(stage, plateau=None)
        elif field == "ema":
            recipe = EMARecipe(**{f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipes.Recipe)},
                               ema_momentum=float(value))
            callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
        else:
            recipe = recipe.replace(**{field: parse_value(value)})
    return recipe, augmentation, stage, callbacks


def pipeline(recipe, row, spec, seed: int) -> keras.Sequential:
    if spec == "d4":
        layers = [keras.layers.RandomFlip("horizontal_and_vertical", seed=seed), augment.RandomRot90(seed=seed + 10)]
        model = keras.Sequential(layers, name="augment_d4")
        model.build((None, *row.image_size, 3))
        return model
    return augment.pipeline(recipe.augment_for(row), input_shape=(*row.image_size, 3), seed=seed)


def run(variant: str, seed: int, meta, duplicates, out: Path, epochs: int | None) -> dict:
    row = study.get("02")
    stage, = study.stages("02", epochs=epochs)
    recipe, spec, stage, callbacks = parse_variant(variant, stage)
    parts = data.split(meta, protocol="grouped", seed=seed, val_size=row.val_size, duplicates=duplicates)
    arrays = data.load_parts(parts, size=row.image_size, progress=False)
    model = models.build("baseline", input_shape=(*row.image_size, 3), weights=None,
                         preprocess=recipe.preprocess_for(row), seed=seed)
    models.preprocess_of(model).adapt([arrays[part][0] for part in recipe.standardize_on])
    augmentation = pipeline(recipe, row, spec, seed)
    models.set_trainable(model, "all", bn=recipe.bn_for(stage))
    started = time.perf_counter()
    train.fit(model, {"train": arrays["train"], "val": arrays["val"]}, recipe, stage, batch_size=row.batch_size,
              augmentation=augmentation, out_dir=out / f"{variant}_seed{seed}", seed=seed, callbacks=callbacks,
              verbose=0)
    result = {"variant": variant, "seed": seed, "fit_s": round(time.perf_counter() - started)}
    for part in ("val", "test"):
        y, predicted = arrays[part][1], evaluate.predict(model, arrays[part][0]).argmax(axis=1)
        result[f"{part}_balanced_accuracy"] = balanced_accuracy_score(y, predicted)
        if part == "test":
            result["test_macro_f1"] = f1_score(y, predicted, average="macro")
            result["test_accuracy"] = accuracy_score(y, predicted)
    return result


METRICS = ("test_balanced_accuracy", "test_macro_f1", "test_accuracy", "val_balanced_accuracy")


def summary(results: list[dict]) -> str:
    lines = ["| variant | seeds | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for variant in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == variant]
        cells = [f"{np.mean([r[m] for r in runs]):.3f} ± {np.std([r[m] for r in runs], ddof=1) if len(runs) > 1 else 0:.3f}"
                 for m in METRICS]
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    default = os.environ.get("SKINLIB_TEST_DATA") or PROJECT.parent / "shared/data/ham10000"
    parser.add_argument("--data", type=Path, default=Path(default), help="HAM10000 with images_200x150")
    parser.add_argument("--variants", nargs="+", default=["study", "corrected"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="2 epochs on a 300-image subset: checks the script")
    args = parser.parse_args(argv)
    meta = data.load_metadata(args.data, images="images_200x150")
    if args.dry_run:
        meta = data.subset(meta, 300, seed=0)
    duplicates = data.find_duplicates(meta)
    with tempfile.TemporaryDirectory(prefix="recipe-variants-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        results = []
        for variant in args.variants:
            for seed in args.seeds:
                results.append(run(variant, seed, meta, duplicates, out, epochs=2 if args.dry_run else None))
                print(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in results[-1].items()),
                      flush=True)
                with open(out / "runs.csv", "a", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(results[-1]))
                    writer.writerow(results[-1]) if handle.tell() else (writer.writeheader(), writer.writerow(results[-1]))
    print(f"\nBaseline CNN, grouped split (near-duplicates merged), {'dry run' if args.dry_run else 'full size'}:\n")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
