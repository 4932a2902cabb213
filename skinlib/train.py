"""Training: the study's two stages (head, then "top" or "all") under a recipe, with one merged history.

::

    from skinlib import models, train

    model = models.build("densenet201")
    history = train.fit(model, {"train": (x_train, y_train), "val": (x_val, y_val)}, "seed",
                        out_dir="runs/densenet201-seed")
    history.plot(x="epoch", y=["accuracy", "val_accuracy"])

``fit`` trains ``model`` in place and returns a pandas DataFrame with one row per epoch of every stage
(``epoch, stage, stage_epoch, loss, accuracy, val_loss, val_accuracy, lr``); the study lost its stage-B curves.
Augmentation runs as Keras preprocessing layers in a training-only wrapper around ``model``, so ``model``
itself stays the inference model (raw pixels in, probabilities out).

Under ``out_dir`` it writes:

- ``history.csv``: the merged history, rewritten after every epoch;
- ``best.weights.h5`` (best ``recipe.monitor`` so far) and ``last.weights.h5`` (the latest epoch), both of the
  inference model, loadable with ``models.build(name, weights=path)``;
- ``checkpoint/``: the training state (weights, optimizer, epoch) of the running stage, so that
  ``fit(..., resume=True)`` continues after an interruption from the last finished epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from skinlib import CLASSES, augment, models, recipes
from skinlib.backbones import Backbone, Phase
from skinlib.errors import SkinlibError
from skinlib.recipes import Optimizer, Plateau, Recipe

HISTORY_COLUMNS = ("epoch", "stage", "stage_epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr")
NUM_CLASSES = len(CLASSES)


class TrainError(SkinlibError, ValueError):
    """Training data or options that cannot be used."""


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Data:
    """Training and validation arrays: images uint8 (N, H, W, 3) with raw 0..255 pixels, labels int (N,)."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]

    @classmethod
    def from_any(cls, data) -> "Data":
        """Accepts a Data, or a mapping / object with "train" and "val" (images, labels) pairs."""
        if isinstance(data, Data):
            return data
        try:
            if isinstance(data, dict):
                train, val = data["train"], data["val"]
            else:
                train, val = data.train, data.val
            return cls(train=(train[0], train[1]), val=(val[0], val[1]))
        except (KeyError, AttributeError, TypeError, IndexError):
            raise TrainError(
                'data must be {"train": (images, labels), "val": (images, labels)} or a train.Data'
            ) from None

    def checked(self, input_shape) -> "Data":
        """Validates shapes and labels against a model input shape; labels become int32."""
        parts = {}
        for part, (x, y) in (("train", self.train), ("val", self.val)):
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
                raise TrainError(
                    f"data[{part!r}] images have shape {x.shape}; the model expects (N, *{tuple(input_shape)}) "
                    "(resize with skinlib.data.load_images(frame, size=(height, width)))"
                )
            if y.ndim != 1 or len(y) != len(x):
                raise TrainError(f"data[{part!r}] labels must be a 1-D array of {len(x)} ints, got shape {y.shape}")
            if len(y) == 0:
                raise TrainError(f"data[{part!r}] is empty")
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_CLASSES:
                raise TrainError(
                    f"data[{part!r}] labels must be ints in 0..{NUM_CLASSES - 1} (indices into skinlib.CLASSES)"
                )
            parts[part] = (x, y.astype("int32"))
        return Data(**parts)


class TrainBatches(keras.utils.PyDataset):
    """Shuffled (or class-balanced) batches of uint8 images with one-hot labels and optional sample weights.

    A ``PyDataset`` works in every Keras backend, keeps the images as uint8 in host memory (a 10,000-image
    192x256 array is never copied into the graph), and makes balanced sampling and seeding explicit.
    """

    def __init__(self, x, y, batch_size: int, seed: int = 0, class_weight=None, balanced=False, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y
        self.onehot = keras.utils.to_categorical(y, NUM_CLASSES).astype("float32")
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)
        self.sample_weight = None
        if class_weight is not None:
            self.sample_weight = np.array([class_weight.get(int(c), 1.0) for c in y], dtype="float32")
        self.probabilities = None
        if balanced:
            counts = np.bincount(y, minlength=NUM_CLASSES)
            self.probabilities = 1.0 / counts[y]
            self.probabilities /= self.probabilities.sum()
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        batch = (self.x[rows], self.onehot[rows])
        if self.sample_weight is not None:
            batch = (*batch, self.sample_weight[rows])
        return batch

    def on_epoch_end(self):
        n = len(self.x)
        if self.probabilities is None:
            self.order = self.rng.permutation(n)
        else:
            self.order = self.rng.choice(n, size=n, replace=True, p=self.probabilities)


def balanced_class_weight(y) -> dict[int, float]:
    """scikit-learn's "balanced" weights n / (k * count) for the classes present in ``y``."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights)}


# ----------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Stage:
    """One ``keras.Model.fit`` call of the plan."""

    name: str  # "head", "top" or "all"
    epochs: int
    optimizer: Optimizer
    plateau: Plateau | None
    recompile: bool = True  # False: continue the previous stage (same optimizer state), new callbacks only
    early_stopping: int | None = None


def plan(spec: Backbone, recipe: Recipe, finetune: str | None = None, epochs=None) -> list[Stage]:
    """The stages ``fit`` runs for a backbone and a recipe.

    ``finetune`` ("top" or "all"; default the table's first) picks the second stage of pretrained backbones;
    ``epochs`` overrides the table: an int for every stage (smoke runs) or a dict per stage name.
    """
    if spec.unfreeze is None:  # the baseline: one stage, from scratch
        if finetune not in (None, "all"):
            raise TrainError(f"{spec.key!r} trains in one stage ('all'); finetune={finetune!r} does not apply")
        finetune, head = "all", None
    else:
        finetune = finetune or spec.default_finetune
        if finetune not in ("top", "all"):
            raise TrainError(f"unknown finetune stage {finetune!r}; accepted values: top, all")
        head = Stage("head", spec.head_epochs, recipe.head_optimizer, None)
    phases = spec.finetune.get(finetune) or spec.finetune[spec.default_finetune]
    if epochs is not None:
        wanted = epochs if isinstance(epochs, dict) else {"head": epochs, finetune: epochs}
        unknown = set(wanted) - {"head", finetune}
        if unknown or any(int(n) < 0 for n in wanted.values()):
            raise TrainError(f"epochs={epochs!r}: give an int >= 0 or a dict over 'head' and {finetune!r}")
        if head is not None and "head" in wanted:
            head = Stage("head", int(wanted["head"]), recipe.head_optimizer, None)
        if finetune in wanted:
            phases = (Phase(int(wanted[finetune]), phases[0].patience, phases[0].cooldown),)

    optimizer = recipe.finetune_optimizer if head is not None else recipe.scratch_optimizer
    stages = [head] if head is not None and head.epochs > 0 else []
    for number, phase in enumerate(phases):
        plateau = recipe.plateau
        if plateau is not None:
            plateau = Plateau(plateau.factor, phase.patience, plateau.min_lr, phase.cooldown)
        if phase.epochs > 0:
            stages.append(Stage(finetune, phase.epochs, optimizer, plateau, number == 0, recipe.early_stopping))
    return stages


# ----------------------------------------------------------------------------------------------- callbacks


class _EpochLog(keras.callbacks.Callback):
    """Appends one merged-history row per epoch (read before ReduceLROnPlateau changes the rate)."""

    def __init__(self, rows: list, stage: str, path: Path | None):
        super().__init__()
        self.rows, self.stage, self.path = rows, stage, path

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        in_stage = 0  # epochs of this stage so far (a continued phase or a resumed run keeps counting)
        for row in reversed(self.rows):
            if row["stage"] != self.stage:
                break
            in_stage += 1
        row = {"epoch": len(self.rows) + 1, "stage": self.stage, "stage_epoch": in_stage + 1}
        for key in HISTORY_COLUMNS[3:-1]:
            row[key] = float(logs[key]) if key in logs else np.nan
        row["lr"] = _learning_rate(self.model.optimizer)
        self.rows.append(row)
        if self.path is not None:
            _history_frame(self.rows).to_csv(self.path, index=False)


def _learning_rate(optimizer) -> float:
    """The optimizer's current learning rate as a float, at float32's shortest repr (1e-4, not 9.99e-05)."""
    rate = optimizer.learning_rate
    rate = rate.numpy() if hasattr(rate, "numpy") else rate
    return float(str(np.float32(rate)))


class _Weights(keras.callbacks.Callback):
    """Keeps the inference model's best (by ``monitor``) and last weights, on disk when an out_dir is given."""

    def __init__(self, model, monitor, mode, best, out_dir: Path | None):
        super().__init__()
        self.inference_model, self.monitor, self.mode, self.best = model, monitor, mode, best
        self.out_dir = out_dir
        self.best_weights = None

    def better(self, value) -> bool:
        if value is None or np.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.out_dir is not None:
            self.inference_model.save_weights(self.out_dir / "last.weights.h5")
        if self.better(value):
            self.best = float(value)
            if self.out_dir is not None:
                self.inference_model.save_weights(self.out_dir / "best.weights.h5")
            else:
                self.best_weights = [np.array(w) for w in self.inference_model.get_weights()]

    def restore_best(self):
        if self.out_dir is not None and (self.out_dir / "best.weights.h5").is_file():
            self.inference_model.load_weights(self.out_dir / "best.weights.h5")
        elif self.best_weights is not None:
            self.inference_model.set_weights(self.best_weights)


class TqdmEpochs(keras.callbacks.Callback):
    """One tqdm bar per stage, advancing per epoch with the latest metrics (``fit(..., verbose="tqdm")``)."""

    def __init__(self, stage: str, epochs: int):
        super().__init__()
        self.stage, self.epochs, self.bar = stage, epochs, None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.epochs, desc=f"stage {self.stage}", unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.n = epoch + 1
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in (logs or {}).items() if "loss" in k or "acc" in k})

    def on_train_end(self, logs=None):
        self.bar.close()


# ----------------------------------------------------------------------------------------------- fit


def fit(
    model: keras.Model,
    data,
    recipe: str | Recipe = "seed",
    *,
    out_dir: str | Path | None = None,
    epochs: int | dict | None = None,
    batch_size: int | None = None,
    finetune: str | None = None,
    seed: int = 0,
    run_eagerly: bool = False,
    mixed_precision: bool = False,
    resume: bool = False,
    class_weight: dict | str | None = None,
    strategy=None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
) -> pd.DataFrame:
    """Trains ``model`` (from ``models.build``) in place under ``recipe``; returns the merged history.

    Args:
        model: the inference model; it is trained in place and, with ``recipe.restore_best``, ends with the
            best validation weights, else with the last epoch's (the study's choice).
        data: ``{"train": (images, labels), "val": (images, labels)}`` (uint8 NHWC raw pixels at the model's
            input shape; int labels indexing ``skinlib.CLASSES``), or a :class:`Data`. The full validation set
            is evaluated after every epoch.
        recipe: "seed", "corrected" or a ``recipes.Recipe``.
        out_dir: folder for history.csv, best/last weights and the resume checkpoint (None: keep nothing).
        epochs: None (the backbone table's), an int for every stage, or {"head": n, "top": m}.
        batch_size: None (the table's) or an int (the global batch, split over a strategy's replicas).
        finetune: "top" or "all" for the second stage (default: the table's first); the baseline has one.
        seed: seeds Python, NumPy and the backend (``keras.utils.set_random_seed``), the shuffling and the
            augmentation layers.
        run_eagerly: no graph compilation: slow per step, but no compile time (tiny smoke runs).
        mixed_precision: require a model built with ``models.build(..., mixed_precision=True)``; Keras then
            scales the loss. (The dtype policy is fixed when layers are created, so it cannot be switched here.)
        resume: continue from ``out_dir``'s checkpoint (the last finished epoch) instead of starting over.
        class_weight: None (the recipe's ``balance``), "balanced", or {class index: weight}.
        strategy: a ``tf.distribute`` strategy (e.g. ``MirroredStrategy()`` over several GPUs); build the
            model inside ``with strategy.scope():``.
        callbacks: extra Keras callbacks, called after skinlib's own in every stage.
        verbose: Keras' (``"auto"``, 0, 1 per-batch bar, 2 one line per epoch) or ``"tqdm"`` (a bar per stage).

    The train step is compiled once per stage (``set_trainable`` then ``compile``); under TensorFlow the first
    epoch of a large backbone spends a while compiling the graph.
    """
    recipe = recipes.get(recipe)
    spec = models.spec_of(model)
    extra_callbacks = list(callbacks or [])
    data = Data.from_any(data).checked(model.input_shape[1:])
    stages = plan(spec, recipe, finetune, epochs)
    batch_size = int(batch_size or spec.batch_size)
    out_dir = _prepare_out_dir(out_dir, resume)
    _check_precision(model, mixed_precision)
    _check_strategy(model, strategy)
    _check_preprocess(model, spec, recipe)

    preprocess = models.preprocess_of(model)
    if preprocess.mode == "standardize" and not preprocess.adapted:
        preprocess.adapt(data.train[0])

    keras.utils.set_random_seed(seed)
    class_weight = _class_weight(class_weight, recipe, data.train[1])

    def scope():  # a strategy's scope() context can be entered once: make a new one each time
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        pipeline = recipe.augment_baseline if spec.unfreeze is None else recipe.augment
        training_model = _training_model(model, augment.pipeline(pipeline, model.input_shape[1:], seed=seed))

    state = _State(out_dir)
    rows, done_stages = (state.history(), state.done_stages()) if resume else ([], 0)
    last_weights = None if out_dir is None else out_dir / "last.weights.h5"
    if resume and last_weights.is_file():
        model.load_weights(last_weights)  # the end of the last finished epoch
    weights = _Weights(model, recipe.monitor, recipe.monitor_mode, _best(rows, recipe), out_dir)
    validation = (data.val[0], keras.utils.to_categorical(data.val[1], NUM_CLASSES).astype("float32"))
    stopped_stage = None

    for number, stage in enumerate(stages):
        if number < done_stages:
            continue
        if stage.name == stopped_stage:  # early stopping ended this stage: skip its later phases
            state.mark_done(number + 1, len(rows))
            continue
        if resume:  # keep the rows of finished stages and of this stage's checkpointed epochs
            rows = rows[: state.done_rows() + state.backup_epochs(number)]
        if stage.recompile or not training_model.compiled:
            with scope():
                models.set_trainable(model, stage.name, bn=recipe.bn)
                _compile(training_model, stage, recipe, run_eagerly)
            if not stage.recompile and last_weights is not None and last_weights.is_file():
                model.load_weights(last_weights)  # a resumed continuation keeps its BatchNorm statistics
        resume = False  # later stages of this call start fresh

        stage_callbacks = [_EpochLog(rows, stage.name, state.history_path), weights]
        stage_callbacks += _stage_callbacks(stage, recipe, state.backup_dir(number), verbose)
        stage_callbacks += extra_callbacks
        training_model.fit(
            **_training_inputs(data, batch_size, seed + number, class_weight, recipe.balance == "sampling"),
            validation_data=validation,
            validation_batch_size=batch_size,
            epochs=stage.epochs,
            callbacks=stage_callbacks,
            verbose=0 if verbose == "tqdm" else verbose,
        )
        if any(isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch > 0 for c in stage_callbacks):
            stopped_stage = stage.name
        state.mark_done(number + 1, len(rows))

    if recipe.restore_best:
        weights.restore_best()
    history = _history_frame(rows)
    if state.history_path is not None:
        history.to_csv(state.history_path, index=False)
    return history


# ----------------------------------------------------------------------------------------------- helpers


def _training_inputs(data: Data, batch_size: int, seed: int, class_weight, balanced: bool) -> dict:
    """Keyword arguments of ``fit`` for the training set.

    Plain arrays with Keras' own shuffling by default: under TensorFlow that runs about 1.6x faster than
    feeding the same batches through a ``PyDataset`` (bench/train_throughput.py). Balanced sampling, which
    draws with replacement, needs :class:`TrainBatches`.
    """
    if balanced:
        return {"x": TrainBatches(*data.train, batch_size, seed=seed, class_weight=class_weight, balanced=True)}
    x, y = data.train
    return {"x": x, "y": keras.utils.to_categorical(y, NUM_CLASSES).astype("float32"), "batch_size": batch_size,
            "shuffle": True, "class_weight": class_weight}


def _training_model(model: keras.Model, augmentation: keras.Sequential) -> keras.Model:
    """``augmentation`` then ``model``: augmentation acts in ``fit`` only (training=True)."""
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    return keras.Model(inputs, model(augmentation(inputs)), name=f"{model.name}_training")


def _compile(training_model: keras.Model, stage: Stage, recipe: Recipe, run_eagerly: bool) -> None:
    """A fresh optimizer for the stage, categorical cross-entropy (with the recipe's smoothing), accuracy."""
    training_model.compile(
        optimizer=stage.optimizer.make(),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )


def _stage_callbacks(stage: Stage, recipe: Recipe, backup: Path | None, verbose) -> list:
    """Checkpointing for resume, the recipe's plateau and early stopping, and the tqdm bar."""
    callbacks = []
    if backup is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False))
    if stage.plateau is not None:
        p = stage.plateau
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=recipe.monitor, mode=recipe.monitor_mode, factor=p.factor, patience=p.patience,
                min_lr=p.min_lr, cooldown=p.cooldown, verbose=0,
            )
        )
    if stage.early_stopping and stage.name != "head":
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=recipe.monitor, mode=recipe.monitor_mode, patience=stage.early_stopping
            )
        )
    if verbose == "tqdm":
        callbacks.append(TqdmEpochs(stage.name, stage.epochs))
    return callbacks


def _history_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))
    return frame.astype({"epoch": "int64", "stage_epoch": "int64"})


def _best(rows, recipe: Recipe):
    values = [r[recipe.monitor] for r in rows if not np.isnan(r.get(recipe.monitor, np.nan))]
    if not values:
        return None
    return max(values) if recipe.monitor_mode == "max" else min(values)


def _class_weight(class_weight, recipe: Recipe, y):
    if class_weight is None:
        class_weight = "balanced" if recipe.balance == "class_weight" else None
    if class_weight is None:
        return None
    if class_weight == "balanced":
        return balanced_class_weight(y)
    if isinstance(class_weight, dict):
        return {int(k): float(v) for k, v in class_weight.items()}
    raise TrainError(f"class_weight must be None, 'balanced' or a dict {{class index: weight}}, got {class_weight!r}")


def _prepare_out_dir(out_dir, resume: bool) -> Path | None:
    if out_dir is None:
        if resume:
            raise TrainError("resume=True needs the out_dir of the interrupted run")
        return None
    out_dir = Path(out_dir)
    if resume:
        if not (out_dir / "history.csv").is_file() and not (out_dir / _State.CHECKPOINT).is_dir():
            warnings.warn(f"resume=True but {out_dir} holds no run yet; starting from the first epoch", stacklevel=3)
    else:
        for name in ("history.csv", "best.weights.h5", "last.weights.h5"):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / _State.CHECKPOINT, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


class _State:
    """The resume state under ``out_dir/checkpoint``: finished stages, and one BackupAndRestore per stage."""

    CHECKPOINT = "checkpoint"

    def __init__(self, out_dir: Path | None):
        self.out_dir = out_dir
        self.root = None if out_dir is None else out_dir / self.CHECKPOINT
        self.history_path = None if out_dir is None else out_dir / "history.csv"

    def history(self) -> list[dict]:
        if self.history_path is None or not self.history_path.is_file():
            return []
        return pd.read_csv(self.history_path).to_dict("records")

    def _read(self) -> dict:
        path = None if self.root is None else self.root / "state.json"
        return json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def done_stages(self) -> int:
        """How many stages of the plan finished."""
        return self._read().get("done_stages", 0)

    def done_rows(self) -> int:
        """How many history rows the finished stages wrote."""
        return self._read().get("done_rows", 0)

    def mark_done(self, done_stages: int, done_rows: int) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "state.json").write_text(json.dumps({"done_stages": done_stages, "done_rows": done_rows}))
        shutil.rmtree(self.root / f"stage{done_stages - 1}", ignore_errors=True)  # its weights are in last.*

    def backup_dir(self, number: int) -> Path | None:
        return None if self.root is None else self.root / f"stage{number}"

    def backup_epochs(self, number: int) -> int:
        path = None if self.root is None else self.root / f"stage{number}" / "training_metadata.json"
        return json.loads(path.read_text())["epoch"] if path is not None and path.is_file() else 0


def _check_precision(model: keras.Model, mixed_precision: bool) -> None:
    built_mixed = model.get_layer("head_dense").dtype_policy.name.startswith("mixed")
    if mixed_precision and not built_mixed:
        raise TrainError(
            "mixed_precision=True needs a model built with it: models.build(name, ..., mixed_precision=True) "
            "(a layer's dtype policy is fixed when it is created)"
        )


def _check_strategy(model: keras.Model, strategy) -> None:
    if strategy is None:
        return
    variable = model.weights[0].value
    if not strategy.extended.variable_created_in_scope(variable):
        raise TrainError(
            "the model was built outside the strategy: build it inside `with strategy.scope():` "
            "(e.g. `with strategy.scope(): model = models.build(...)`), then call fit(..., strategy=strategy)"
        )


def _check_preprocess(model: keras.Model, spec: Backbone, recipe: Recipe) -> None:
    expected = spec.seed_preprocess if recipe.preprocess == "seed" else spec.preprocess
    actual = models.preprocess_of(model).mode
    if actual != expected:
        warnings.warn(
            f"recipe {recipe.name!r} expects {spec.key!r} inputs preprocessed as {expected!r}, but the model's "
            f"Preprocess layer is {actual!r}; build it with models.build({spec.key!r}, "
            f"preprocess={recipe.preprocess!r})",
            stacklevel=3,
        )
