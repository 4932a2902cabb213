"""Training speed on one GPU: skinlib's models on Keras 3 + JAX against plain PyTorch (timm), bf16, same batch.

Written for a single-GPU machine that has PyTorch, timm and JAX but no TensorFlow, so Keras runs on JAX
there (bring the keras, namex and optree wheels along if they are missing: see bench/README.md). For each
backbone, at the study's input size (192x256; ``--size`` to change) and one batch size for every framework:

* ``keras-jax``: ``skinlib.models.build(name, weights=None, mixed_precision="mixed_bfloat16")``, every layer
  trainable, compiled with Adam and ``jit_compile=True``, trained with ``model.fit`` on uint8 host arrays;
* ``torch-eager``: the same architecture from timm (``forward_features``, then skinlib's head: global max pool,
  Dense 512 ReLU, Dropout 0.5, Dense 7), channels-last, ``torch.autocast(bfloat16)``, Adam, uint8 host
  batches copied to the GPU each step, ``cudnn.benchmark`` on;
* ``torch-compile`` (optional): the same after ``torch.compile``.

Each (framework, backbone) runs in a fresh process. Steady speed is images/s over ``--steps`` steps after
``--warmup-steps``; the compile cost is the warm-up time minus what those steps take at steady speed (JAX/XLA
compile and autotuning, torch.compile, cuDNN benchmarking). The table gives keras-jax / torch-eager speed and
each compile cost; targets (issue 7): every backbone at least as fast as PyTorch eager, compile under 60 s.

    KERAS_BACKEND=jax python bench/gpu.py                                   # the four backbones
    XLA_FLAGS=--xla_gpu_autotune_level=0 python bench/gpu.py --backbones densenet201
    python bench/gpu.py --dry-run      # CPU check: tiny sizes, 1-2 steps, missing frameworks skipped

Not measured in the session that wrote it (no GPU there): see bench/README.md for the settings to try.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Target, format_table, machine, print_targets, report_result, run_worker  # noqa: E402

FRAMEWORKS = ("keras-jax", "torch-eager", "torch-compile")
# timm's name of each skinlib backbone (bench-only fact; the baseline CNN is rebuilt in PyTorch below).
TIMM_NAMES = {"vgg16": "vgg16", "inception_v3": "inception_v3",
              "inception_resnet_v2": "inception_resnet_v2", "densenet201": "densenet201"}
STUDY_BACKBONES = tuple(TIMM_NAMES)
EPOCH_IMAGES = 8012  # about one epoch of the study's training set, to put the compile cost in proportion
NUM_CLASSES = 7
# Environment variables that change the measurement (printed with the results; set them to try a setting).
SETTINGS_ENV = ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "XLA_PYTHON_CLIENT_MEM_FRACTION")
REQUIREMENTS = {"keras-jax": ("keras", "jax"), "torch-eager": ("torch", "timm"), "torch-compile": ("torch", "timm")}


def missing_modules(framework: str) -> list[str]:
    return [m for m in REQUIREMENTS[framework] if importlib.util.find_spec(m) is None]


def host_batches(n: int, size: tuple[int, int], seed: int = 0):
    """``n`` random uint8 images (N, H, W, 3) and int labels, as NumPy arrays on the host."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8),
            rng.integers(0, NUM_CLASSES, size=n).astype("int32"))


# ---------------------------------------------------------------------------------------------------
# Workers (one framework and one backbone per fresh process)
# ---------------------------------------------------------------------------------------------------

def keras_worker(args) -> dict:
    """skinlib's model on Keras (JAX on the GPU machine): returns warm-up and steady timings."""
    import keras

    from skinlib import models

    model = models.build(args.backbone, input_shape=(*args.size, 3), weights=None,
                         mixed_precision="mixed_bfloat16")
    x, y = host_batches(args.batch_size * max(args.warmup_steps, args.steps), tuple(args.size))
    preprocess = models.preprocess_of(model)
    if preprocess.mode == "standardize" and not preprocess.adapted:
        preprocess.adapt(x)  # the baseline's one mean and std (notebook 02 adapts it)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                  jit_compile=args.jit_compile, steps_per_execution=args.steps_per_execution)

    def fit(steps: int) -> float:
        n = args.batch_size * steps
        start = time.perf_counter()
        model.fit(x[:n], y[:n], batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
        return time.perf_counter() - start  # fit ends by reading its logs, which waits for the device

    warmup = fit(args.warmup_steps)
    steady = fit(args.steps)
    try:
        import jax

        device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    except ImportError:
        device = "cpu"
    return {"warmup_s": warmup, "steady_s": steady, "device": device,
            "framework_detail": f"Keras {keras.__version__} on {keras.backend.backend()}"}


def torch_model(backbone: str, size: tuple[int, int]):
    """timm's backbone (its ``forward_features``) with skinlib's head, taking NHWC uint8 pixels 0..255."""
    import timm
    import torch
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            if backbone == "baseline":  # skinlib's baseline CNN: conv 16, 32, 64, each 3x3 + 2x2 max pool
                layers, channels = [], 3
                for width in (16, 32, 64):
                    layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                    channels = width
                self.features = nn.Sequential(*layers)
                self.pool = nn.Flatten()
                features = channels * (size[0] // 8) * (size[1] // 8)
            else:
                net = timm.create_model(TIMM_NAMES[backbone], pretrained=False, num_classes=0)
                self.features = net.forward_features
                self.net = net
                self.pool = None
                features = net.num_features
            self.head = nn.Sequential(nn.Linear(features, 512), nn.ReLU(), nn.Dropout(0.5),
                                      nn.Linear(512, NUM_CLASSES))

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
            x = self.features(x)
            x = self.pool(x) if self.pool is not None else torch.amax(x, dim=(2, 3))
            return self.head(x)

    return Classifier()


def torch_worker(args) -> dict:
    """timm's model in PyTorch, eager or ``torch.compile``: returns warm-up and steady timings."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = torch_model(args.backbone, tuple(args.size)).to(device).to(memory_format=torch.channels_last)
    model.train()
    if args.worker == "torch-compile":
        model = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = host_batches(args.batch_size * max(args.warmup_steps, args.steps), tuple(args.size))
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()
    if cuda:
        x, y = x.pin_memory(), y.pin_memory()

    def step(i: int) -> None:
        batch = slice(i * args.batch_size, (i + 1) * args.batch_size)
        images, labels = x[batch].to(device, non_blocking=True), y[batch].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def run(steps: int) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warmup = run(args.warmup_steps)
    steady = run(args.steps)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    return {"warmup_s": warmup, "steady_s": steady, "device": f"{device.type}: {name}",
            "framework_detail": f"PyTorch {torch.__version__}"}


def worker(args) -> None:
    result = keras_worker(args) if args.worker == "keras-jax" else torch_worker(args)
    result.update(framework=args.worker, backbone=args.backbone, batch_size=args.batch_size,
                  warmup_steps=args.warmup_steps, steps=args.steps)
    report_result(result)


# ---------------------------------------------------------------------------------------------------
# The benchmark (parent process)
# ---------------------------------------------------------------------------------------------------

def keras_backend_for(dry_run: bool) -> tuple[str | None, str]:
    """The Keras backend to use and a line saying why: JAX, or in a dry run whatever Keras has here."""
    if importlib.util.find_spec("keras") is None:
        return None, "skipped keras-jax: keras is not importable (pip install the carried keras/namex/optree wheels)"
    if importlib.util.find_spec("jax") is not None:
        return "jax", "keras-jax: Keras on JAX"
    if not dry_run:
        return None, "skipped keras-jax: jax is not importable (pip install 'jax[cuda12]')"
    for backend in ("tensorflow", "torch"):
        if importlib.util.find_spec(backend) is not None:
            return backend, (f"keras-jax: jax is not importable here; this dry run uses Keras on {backend} so "
                             f"that the Keras path is still exercised (its figures are not JAX's)")
    return None, "skipped keras-jax: neither jax nor another Keras backend is importable"


def run(args) -> bool:
    print(f"GPU training benchmark: batch {args.batch_size}, bf16 mixed precision, "
          f"{args.warmup_steps} warm-up + {args.steps} timed steps, each run in a fresh process")
    print(f"Machine: {machine()}")
    settings = {name: os.environ.get(name, "") for name in SETTINGS_ENV}
    print("  ".join(f"{k}={v!r}" for k, v in settings.items())
          + f"  jit_compile={args.jit_compile}  steps_per_execution={args.steps_per_execution}")
    env = {}
    available = []
    for framework in args.frameworks:
        if framework == "keras-jax":
            backend, line = keras_backend_for(args.dry_run)
            print(line)
            if backend:
                env["KERAS_BACKEND"] = backend
                available.append(framework)
            continue
        missing = missing_modules(framework)
        if missing:
            print(f"skipped {framework}: {', '.join(missing)} not importable (pip install torch timm)")
        else:
            available.append(framework)
    results: dict[tuple[str, str], dict] = {}
    for backbone in args.backbones:
        size = tuple(args.size) if args.size else (smallest_size(backbone) if args.dry_run else study_size(backbone))
        for framework in available:
            command = ["bench/gpu.py", "--worker", framework, "--backbone", backbone,
                       "--size", *map(str, size), "--batch-size", str(args.batch_size),
                       "--warmup-steps", str(args.warmup_steps), "--steps", str(args.steps),
                       "--steps-per-execution", str(args.steps_per_execution),
                       "--jit-compile", str(args.jit_compile)]
            try:
                result = run_worker(command, env=env, timeout=args.timeout)
            except Exception as error:  # a failed or timed-out run is a result too: report it, go on
                reason = (f"did not finish within {args.timeout:.0f} s" if "TimeoutExpired" in type(error).__name__
                          else failure_line(str(error)))
                print(f"  {framework} {backbone}: {reason}", file=sys.stderr)
                result = {"error": reason}
            result["size"] = size
            results[(framework, backbone)] = result
            if "error" not in result:
                speed = args.batch_size * args.steps / result["steady_s"]
                print(f"  {framework:13s} {backbone:20s} {speed:8.1f} img/s steady, compile ~{compile_cost(result):.1f} s"
                      f"  ({result['device']}, {result['framework_detail']})", file=sys.stderr, flush=True)
    return summarize(args, results, available)


def failure_line(text: str) -> str:
    """The most telling line of a failed worker's output: its last line naming an error."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["failed"])[-1][:200]


def smallest_size(backbone: str) -> tuple[int, int]:
    """A dry run's input: 32x32, or the smallest the backbone accepts (75x75 for the Inception networks)."""
    from skinlib import backbones

    side = max(32, backbones.get(backbone).min_size)
    return side, side


def study_size(backbone: str) -> tuple[int, int]:
    from skinlib import backbones

    return backbones.get(backbone).input_size


def compile_cost(result: dict) -> float:
    """Warm-up time minus the time its steps take at steady speed."""
    per_step = result["steady_s"] / result["steps"]
    return max(0.0, result["warmup_s"] - result["warmup_steps"] * per_step)


def summarize(args, results, available) -> bool:
    rows, targets = [], []
    reference = "torch-eager"
    for backbone in args.backbones:
        row = [f"{backbone} {'x'.join(map(str, results.get((available[0], backbone), {}).get('size', ())) ) if available else ''}"]
        speeds = {}
        for framework in available:
            result = results[(framework, backbone)]
            speeds[framework] = (float("nan") if "error" in result
                                 else args.batch_size * args.steps / result["steady_s"])
        for framework in available:
            if framework != reference:
                ratio = speeds[framework] / speeds[reference] if reference in speeds else float("nan")
                row.append(ratio)
                if framework == "keras-jax" and reference in speeds:
                    targets.append(Target(f"{backbone}: keras-jax / torch-eager speed", ratio, 1.0))
        for framework in available:
            result = results[(framework, backbone)]
            if "error" in result:
                row.append(result["error"][:60])
                if framework == "keras-jax":
                    targets.append(Target(f"{backbone}: keras-jax compile seconds", float("inf"), 60, at_least=False))
                continue
            cost = compile_cost(result)
            epoch_s = EPOCH_IMAGES / speeds[framework]
            row.append(f"{cost:.1f} s ({cost / epoch_s:.2f} epoch)")
            if framework == "keras-jax":
                targets.append(Target(f"{backbone}: keras-jax compile seconds", cost, 60, at_least=False))
        rows.append(row)
    headers = (["backbone"] + [f"{f} / {reference} speed" for f in available if f != reference]
               + [f"{f} compile" for f in available])
    print()
    if rows and available:
        print(format_table(headers, rows))
    print()
    print(f"Compile = warm-up time - its steps at steady speed (absolute seconds, the issue's target is < 60 s); "
          f"'epoch' = {EPOCH_IMAGES} images at that framework's steady speed.")
    speeds_line = ", ".join(f"{f} {b} {args.batch_size * args.steps / r['steady_s']:.0f} img/s"
                            for (f, b), r in results.items() if "error" not in r)
    if speeds_line:
        print("For reference only (absolute): " + speeds_line)
    if reference not in available:
        print(f"No {reference} run here, so no speed ratio can be judged.")
    return print_targets(targets, args.dry_run)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(STUDY_BACKBONES),
                        choices=["baseline", *STUDY_BACKBONES])
    parser.add_argument("--frameworks", nargs="+", default=["keras-jax", "torch-eager"], choices=FRAMEWORKS)
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="input size (default: each backbone's study size, 192x256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--steps-per-execution", type=int, default=1, help="Keras: train steps per jitted call")
    parser.add_argument("--jit-compile", default="True", choices=("True", "False", "auto"),
                        help="Keras model.compile(jit_compile=...)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per (framework, backbone) run")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU check: baseline at 32x32 (unless --backbones), batch 2, 1 warm-up + 2 steps")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--backbone", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.jit_compile = {"True": True, "False": False}.get(args.jit_compile, args.jit_compile)
    if args.worker:
        worker(args)
        return 0
    if args.dry_run:
        if args.backbones == list(STUDY_BACKBONES):
            args.backbones = ["baseline"]
        args.batch_size, args.warmup_steps, args.steps = 2, 1, 2
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
