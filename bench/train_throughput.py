"""Training speed of ``skinlib.train.fit`` against a bare ``model.fit`` on the same model and arrays.

For each model (default: the baseline CNN and VGG16, both at 64x64, random weights) three runs train the
same uint8 images with the same batch size, optimizer, loss, metric and validation set, each in a fresh
process:

* ``skinlib``: ``train.fit(model, data, "study", stage, ...)`` with the study's last stage of the model's notebook
  ("all" for the baseline, "top" for VGG16) and its augmentation layers, which adds history, checkpoint and
  resume callbacks;
* ``bare + augmentation``: ``keras.Model(x -> model(augmentation(x)))`` with the same layers (trainable parts
  set by ``models.set_trainable``), compiled the same way, ``fit(x, y, shuffle=True)`` on NumPy arrays;
  skinlib / this is the library's own overhead (target >= 0.95);
* ``bare``: the same without the augmentation layers; skinlib / this is what the study's augmentation costs
  (no target: it is work the recipe asks for, not overhead).

An epoch's time is the interval between consecutive ``on_epoch_end`` calls (so shuffling, validation and
callbacks count); the first epoch also compiles, and its extra time over a steady epoch is the compile cost.
Steady speed is the median of the later epochs. CPU time (all threads) is reported beside wall time because
it is steadier on a shared machine.

    python bench/train_throughput.py
    python bench/train_throughput.py --n 16 --dry-run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Target, format_table, machine, median, model_parser, print_targets,  # noqa: E402
                     report_result, run_worker)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
VARIANTS = ("skinlib", "bare_augmented", "bare")
RECIPE = "study"
NOTEBOOK = {"baseline": "02", "vgg16": "03", "inception_v3": "04", "inception_resnet_v2": "05",
            "densenet201": "06"}  # the study notebook whose last stage is timed


def arrays(n: int, size: tuple[int, int], seed: int = 0):
    """Random uint8 images and labels covering all 7 classes (speed does not depend on the content)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8)
    return x, (np.arange(n) % 7).astype("int32")


def epoch_timer():
    """A callback recording wall and CPU time at training start and at every epoch end."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks = []

        def on_train_begin(self, logs=None):
            self.marks = [(time.perf_counter(), time.process_time())]

        def on_epoch_end(self, epoch, logs=None):
            self.marks.append((time.perf_counter(), time.process_time()))

        def intervals(self):
            return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self.marks, self.marks[1:])]

    return EpochTimer()


def worker(args) -> None:
    import keras

    from skinlib import augment, models, recipes, study, train

    recipe = recipes.get(RECIPE)
    row = study.get(NOTEBOOK[args.model])
    size = tuple(args.size)
    x, y = arrays(args.n, size)
    x_val, y_val = arrays(max(args.n // 8, 8), size, seed=1)
    stage = study.stages(row.number, epochs=args.epochs)[-1]
    batch_size = args.batch_size or row.batch_size
    keras.utils.set_random_seed(0)
    model = models.build(args.model, input_shape=(*size, 3), weights=None, preprocess=recipe.preprocess_for(row))
    if models.preprocess_of(model).mode == "standardize":
        models.preprocess_of(model).adapt(x)
    models.set_trainable(model, stage.layers, bn=recipe.bn_for(stage))
    augmentation = augment.pipeline(recipe.augment_for(row), (*size, 3), seed=0)
    timer = epoch_timer()

    if args.worker == "skinlib":
        train.fit(model, {"train": (x, y), "val": (x_val, y_val)}, recipe, stage, batch_size=batch_size,
                  augmentation=augmentation, callbacks=[timer], verbose=0)
    else:
        net = model
        if args.worker == "bare_augmented":
            inputs = keras.Input(shape=(*size, 3))
            net = keras.Model(inputs, model(augmentation(inputs)))
        net.compile(optimizer=recipe.make_optimizer(stage), loss=keras.losses.CategoricalCrossentropy(),
                    metrics=["accuracy"])
        onehot = lambda labels: keras.utils.to_categorical(labels, 7).astype("float32")  # noqa: E731
        net.fit(x, onehot(y), batch_size=batch_size, epochs=args.epochs, shuffle=True,
                validation_data=(x_val, onehot(y_val)), validation_batch_size=batch_size, callbacks=[timer],
                verbose=0)
    intervals = timer.intervals()
    report_result({"model": args.model, "variant": args.worker, "n": args.n, "batch_size": batch_size,
                   "stage": stage.layers, "epochs": intervals, "backend": keras.backend.backend()})


def run(args) -> bool:
    results: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(args.repeats):
        for model in args.models:
            for variant in VARIANTS:
                command = ["bench/train_throughput.py", "--worker", variant, "--model", model,
                           "--size", *map(str, args.size), "--n", str(args.n), "--epochs", str(args.epochs)]
                if args.batch_size:
                    command += ["--batch-size", str(args.batch_size)]
                result = run_worker(command)
                results.setdefault((model, variant), []).append(result)
                steady = median(w for w, _ in result["epochs"][1:])
                print(f"  round {round_ + 1}/{args.repeats} {model} {variant:15s}: first epoch "
                      f"{result['epochs'][0][0]:.1f} s, steady {steady:.2f} s/epoch", file=sys.stderr, flush=True)
    return summarize(args, results)


def summarize(args, results) -> bool:
    def steady(model, variant, column):  # median over rounds and steady epochs
        return median(e[column] for r in results[(model, variant)] for e in r["epochs"][1:])

    def first(model, variant):
        return median(r["epochs"][0][0] for r in results[(model, variant)])

    rows, targets, reference = [], [], []
    for model in args.models:
        any_result = results[(model, "skinlib")][0]
        wall = {v: steady(model, v, 0) for v in VARIANTS}
        cpu = {v: steady(model, v, 1) for v in VARIANTS}
        overhead = wall["bare_augmented"] / wall["skinlib"]
        compile_ratio = {v: (first(model, v) - wall[v]) / wall[v] for v in ("skinlib", "bare_augmented")}
        rows.append([f"{model} {args.size[0]}x{args.size[1]} (stage {any_result['stage']}, batch "
                     f"{any_result['batch_size']})", overhead, cpu["bare_augmented"] / cpu["skinlib"],
                     wall["bare"] / wall["skinlib"], compile_ratio["skinlib"], compile_ratio["bare_augmented"]])
        targets += [Target(f"{model}: skinlib / bare+augmentation speed", overhead, 0.95),
                    Target(f"{model}: skinlib / bare+augmentation CPU efficiency",
                           cpu["bare_augmented"] / cpu["skinlib"], 0.95)]
        reference.append(f"{model}: skinlib {args.n / wall['skinlib']:.0f} img/s, first-epoch compile "
                         f"{first(model, 'skinlib') - wall['skinlib']:.1f} s")
    backend = results[(args.models[0], "skinlib")][0]["backend"]
    print()
    print(f"Train throughput: {args.n} images/epoch, {args.epochs} epochs ({args.epochs - 1} steady), recipe "
          f"{RECIPE!r}, Keras on {backend}; median of {args.repeats} round(s) x steady epochs, fresh process each")
    print(f"Machine: {machine()}")
    print()
    print(format_table(["model", "skinlib / bare+aug speed", "skinlib / bare+aug CPU efficiency",
                        "skinlib / bare (no aug) speed", "skinlib compile / steady epoch",
                        "bare+aug compile / steady epoch"], rows))
    print()
    print("Compile = first epoch - steady epoch (tracing, graph building, XLA); 'bare' = model.fit on NumPy arrays.")
    print("For reference only (absolute, noisy): " + "; ".join(reference))
    return print_targets(targets, args.dry_run)


def main(argv=None) -> int:
    parser = model_parser(__doc__)
    parser.add_argument("--n", type=int, default=1024, help="training images per epoch (default 1024)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is the warm-up")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the backbone table's")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every run")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny run to check the script: baseline only, 32x32, 2 epochs, targets not judged")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.dry_run:
        args.epochs, args.repeats = 2, 1
        args.models = ["baseline"] if args.models == ["baseline", "vgg16"] else args.models
        args.size = (32, 32) if list(args.size) == [64, 64] else args.size
        args.batch_size = args.batch_size or 8
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
