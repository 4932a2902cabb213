"""Inference speed of ``skinlib.evaluate.predict`` (plain, with TTA) and of an ensemble, against ``model.predict``.

For each model (default: the baseline CNN and VGG16, both at 64x64, random weights: speed does not depend on
them) the same uint8 images go through

* ``bare``: ``model.predict(x, batch_size=B)``, the reference;
* ``skinlib``: ``evaluate.predict(model, x, batch_size=B)``;
* ``skinlib TTA``: ``evaluate.predict(model, x, tta="flips", batch_size=B)``, 4 views per image, so its speed
  is compared per view (speed x 4 / bare speed);

and the ensemble of all models (``evaluate.predict`` of each, then ``ensemble.average``) is compared with
the sum of the members' bare ``model.predict`` times. Every call is warmed up once (tracing and compiling),
then the methods take turns for ``--repeats`` rounds and the medians are compared.

Targets (set here; the issue asks for the comparison): skinlib without TTA >= 0.95 of bare speed, TTA >= 0.90
of bare speed per view, ensemble >= 0.90 of the speed of its members' bare predictions.

    python bench/predict_throughput.py
    python bench/predict_throughput.py --n 8 --batch-size 4 --dry-run
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Target, format_table, machine, median, model_parser, print_targets  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TTA = "flips"
TTA_VIEWS = 4


def timed(call) -> tuple[float, float]:
    """Wall and CPU time (all threads of this process) of ``call()``."""
    start, cpu_start = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - start, time.process_time() - cpu_start


def run(args) -> bool:
    import keras
    import numpy as np

    from skinlib import ensemble, evaluate, models

    keras.utils.set_random_seed(0)
    size = tuple(args.size)
    x = np.random.default_rng(0).integers(0, 256, size=(args.n, *size, 3), dtype=np.uint8)
    built = {name: models.build(name, input_shape=(*size, 3), weights=None) for name in args.models}
    for model in built.values():
        preprocess = models.preprocess_of(model)
        if preprocess.mode == "standardize" and not preprocess.adapted:
            preprocess.adapt(x)  # the baseline's one mean and std (notebook 02 adapts it)

    methods = {}
    for name, model in built.items():
        methods[(name, "bare")] = lambda m=model: m.predict(x, batch_size=args.batch_size, verbose=0)
        methods[(name, "skinlib")] = lambda m=model: evaluate.predict(m, x, batch_size=args.batch_size)
        methods[(name, "tta")] = lambda m=model: evaluate.predict(m, x, tta=TTA, batch_size=args.batch_size)
    methods[("ensemble", "skinlib")] = lambda: ensemble.average(
        [evaluate.predict(m, x, batch_size=args.batch_size) for m in built.values()])

    for call in methods.values():  # warm-up: trace and compile every path once
        call()
    times = {key: [] for key in methods}
    for _ in range(args.repeats):
        for key, call in methods.items():
            times[key].append(timed(call))
    t = {key: median(wall for wall, _ in values) for key, values in times.items()}
    c = {key: median(cpu for _, cpu in values) for key, values in times.items()}

    rows, targets = [], []
    for name in built:
        plain = t[(name, "bare")] / t[(name, "skinlib")]
        per_view = TTA_VIEWS * t[(name, "bare")] / t[(name, "tta")]
        rows.append([f"{name} {size[0]}x{size[1]}", plain, c[(name, "bare")] / c[(name, "skinlib")], per_view,
                     TTA_VIEWS * c[(name, "bare")] / c[(name, "tta")]])
        targets += [Target(f"{name}: skinlib / bare speed", plain, 0.95),
                    Target(f"{name}: skinlib / bare CPU efficiency", c[(name, "bare")] / c[(name, "skinlib")], 0.95),
                    Target(f"{name}: TTA speed per view / bare speed", per_view, 0.90)]
    members = sum(t[(name, "bare")] for name in built)
    ensemble_ratio = members / t[("ensemble", "skinlib")]
    ensemble_cpu = sum(c[(name, "bare")] for name in built) / c[("ensemble", "skinlib")]
    rows.append([f"ensemble of {len(built)} (average) vs its members' bare", ensemble_ratio, ensemble_cpu,
                 float("nan"), float("nan")])
    targets += [Target("ensemble speed / members' bare speed", ensemble_ratio, 0.90),
                Target("ensemble CPU efficiency / members' bare", ensemble_cpu, 0.90)]

    print()
    print(f"Predict throughput: {args.n} uint8 images, batch {args.batch_size}, Keras {keras.__version__} on "
          f"{keras.backend.backend()}; median of {args.repeats} round(s) after one warm-up call each")
    print(f"Machine: {machine()}")
    print()
    print(format_table(["model", "skinlib / bare speed", "skinlib / bare CPU efficiency",
                        f"TTA ({TTA_VIEWS} views) per-view speed / bare", "TTA per-view CPU efficiency / bare"],
                       rows))
    print()
    print("Speed = 1 / wall time; CPU efficiency = 1 / CPU time of the process (all threads), steadier than "
          "wall time on a loaded machine. TTA figures are per view: 1.00 means 4 views cost exactly 4 predictions.")
    print("For reference only (absolute, noisy): " + ", ".join(
        f"{name} bare {args.n / t[(name, 'bare')]:.0f} img/s" for name in built)
        + f", ensemble {args.n / t[('ensemble', 'skinlib')]:.0f} img/s")
    return print_targets(targets, args.dry_run)


def main(argv=None) -> int:
    parser = model_parser(__doc__)
    parser.add_argument("--n", type=int, default=256, help="images (default 256; a multiple of the batch)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny run to check the script: baseline only, 32x32, 1 round, targets not judged")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.repeats = 1
        args.models = ["baseline"] if args.models == ["baseline", "vgg16"] else args.models
        args.size = (32, 32) if list(args.size) == [64, 64] else args.size
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
