"""Training: one ``fit`` per stage, told explicitly what to run, on Keras' own callbacks.

::

    from skinlib import augment, models, recipes, study, train

    recipe = recipes.get("study")
    head, top = (recipe.apply(stage) for stage in study.stages("04"))  # epochs, Adam, plateau, BN mode
    augmentation = augment.pipeline(recipe.augment_for(study.get("04")), model.input_shape[1:], seed=0)
    models.set_trainable(model, head)
    history = train.fit(model, data, recipe, head, batch_size=64, augmentation=augmentation, out_dir="run/04")
    models.set_trainable(model, top)
    history = train.fit(model, data, recipe, top, batch_size=64, augmentation=augmentation, out_dir="run/04",
                        history=history)

``settings.resolve`` gives a notebook's stages already applied, and ``fit_options`` (batch size, out_dir, seed,
resume, eager) for the rest.

``fit`` trains ``model`` in place and returns the merged history (one row per epoch of every stage so far:
``epoch, stage, layers, stage_epoch, loss, accuracy, balanced_accuracy, val_loss, val_accuracy,
val_balanced_accuracy, lr``). Augmentation runs as Keras
layers in a training-only wrapper, so ``model`` stays the inference model. Under ``out_dir/stage<k>_<layers>/``
each stage keeps ``history.csv`` (``CSVLogger``), ``best.weights.h5`` and ``last.weights.h5`` of the inference
model (``ModelCheckpoint``) with ``preprocess.json`` beside them (so ``models.build(name, weights=...)`` rebuilds
a model that predicts), ``optimizer.npz`` (the optimizer's state at the end, for a next stage that continues it)
and ``backup/`` (``BackupAndRestore``) while it runs: ``fit(..., resume=True)`` after an interruption skips
finished stages and continues the running one from its last finished epoch, with the optimizer state it had.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from skinlib import CLASSES, fusion, models, recipes, tensorboard_logs
from skinlib.errors import SkinlibError
from skinlib.recipes import Recipe
from skinlib.sampling import BalancedBatches, balanced_class_weight  # noqa: F401  (train.BalancedBatches)

HISTORY_COLUMNS = ("epoch", "stage", "layers", "stage_epoch", "loss", "accuracy", "balanced_accuracy", "val_loss",
                   "val_accuracy", "val_balanced_accuracy", "lr")
NUM_CLASSES = len(CLASSES)
DONE = "final.weights.h5"  # a finished stage's weights (its best or last, as the recipe says)
OPTIMIZER_STATE = "optimizer.npz"  # a finished stage's optimizer variables, for a next stage that continues it

_WRAPPERS: "weakref.WeakKeyDictionary[keras.Model, tuple]" = weakref.WeakKeyDictionary()


class TrainError(SkinlibError, ValueError):
    """Training data or options that cannot be used."""


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
            train, val = (data["train"], data["val"]) if isinstance(data, dict) else (data.train, data.val)
            return cls(train=(train[0], train[1]), val=(val[0], val[1]))
        except (KeyError, AttributeError, TypeError, IndexError):
            raise TrainError('data must be {"train": (images, labels), "val": (images, labels)} or a train.Data') from None

    def checked(self, input_shape) -> "Data":
        """Validates shapes and labels against a model input shape; labels become int32."""
        parts = {}
        for part, (x, y) in (("train", self.train), ("val", self.val)):
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
                raise TrainError(f"data[{part!r}] images have shape {x.shape}; the model expects (N, "
                                 f"*{tuple(input_shape)}) (resize with skinlib.data.load_images(frame, size=(h, w)))")
            if y.ndim != 1 or len(y) != len(x):
                raise TrainError(f"data[{part!r}] labels must be a 1-D array of {len(x)} ints, got shape {y.shape}")
            if len(y) == 0:
                raise TrainError(f"data[{part!r}] is empty")
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_CLASSES:
                raise TrainError(f"data[{part!r}] labels must be ints in 0..{NUM_CLASSES - 1} (indices into skinlib.CLASSES)")
            parts[part] = (x, y.astype("int32"))
        return Data(**parts)


@keras.saving.register_keras_serializable(package="skinlib")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean per-class recall (the ISIC 2018 metric) over the classes present, from one-hot labels and
    probabilities, accumulated over batches: ``val_balanced_accuracy`` for plateaus, checkpoints and early stopping.

    ``sample_weight`` (one weight per sample, shape (batch,) or (batch, 1)) weights each sample's hit and count,
    as ``sklearn.metrics.balanced_accuracy_score(sample_weight=...)``; a class whose weights sum to 0 is absent."""

    def __init__(self, num_classes: int = NUM_CLASSES, name: str = "balanced_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.hits = self.add_variable(shape=(num_classes,), initializer="zeros", name="hits")
        self.counts = self.add_variable(shape=(num_classes,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = keras.ops.cast(y_true, "float32")
        called = keras.ops.one_hot(keras.ops.argmax(y_pred, axis=-1), self.num_classes)
        if sample_weight is not None:
            weight = keras.ops.reshape(keras.ops.cast(sample_weight, "float32"), (-1, 1))
            if weight.shape[0] is not None and truth.shape[0] is not None and weight.shape[0] != truth.shape[0]:
                raise ValueError(f"BalancedAccuracy: sample_weight has {weight.shape[0]} values for "
                                 f"{truth.shape[0]} samples; give one weight per sample")
            truth = truth * weight
        self.hits.assign_add(keras.ops.sum(truth * called, axis=0))
        self.counts.assign_add(keras.ops.sum(truth, axis=0))

    def result(self):
        present = keras.ops.cast(self.counts > 0, "float32")
        recall = self.hits / keras.ops.maximum(self.counts, 1.0)
        return keras.ops.sum(recall * present) / keras.ops.maximum(keras.ops.sum(present), 1.0)

    def reset_state(self):
        self.hits.assign(keras.ops.zeros((self.num_classes,)))
        self.counts.assign(keras.ops.zeros((self.num_classes,)))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class _LogLearningRate(keras.callbacks.Callback):
    """Adds the epoch's learning rate to the logs as ``lr`` (before ReduceLROnPlateau may lower it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["lr"] = float(str(np.float32(keras.ops.convert_to_numpy(rate))))


class _InferenceCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' ModelCheckpoint, saving the inference model that the training wrapper contains."""

    def __init__(self, inference_model: keras.Model, filepath, **kwargs):
        super().__init__(str(filepath), save_weights_only=True, **kwargs)
        self.inference_model = inference_model

    def set_model(self, model):
        super().set_model(self.inference_model)


def fit(model: keras.Model, data, recipe: str | Recipe, stage, *, batch_size: int, augmentation=None,
        out_dir: str | Path | None = None, history: pd.DataFrame | None = None, seed: int = 0,
        resume: bool = False, class_weight: dict | str | None = None, run_eagerly: bool = False,
        mixed_precision: bool = False, strategy=None, callbacks: list | None = None,
        verbose: int | str = "auto", metadata=None, tensorboard: str | Path | None = None,
        hparams: dict | None = None) -> pd.DataFrame:
    """Trains ``model`` in place for one stage; returns ``history`` with this stage's epochs appended.

    Args:
        model: the inference model (from ``models.build``), with ``models.set_trainable(model, stage)`` already
            called for this stage: a model set for other layers or another BatchNorm mode is refused. With ``recipe.restore_best`` it ends with the stage's best validation weights, else with
            the last epoch's (the study's choice).
        data: ``{"train": (images, labels), "val": (images, labels)}``: uint8 NHWC raw pixels at the model's
            input shape, int labels indexing ``skinlib.CLASSES``. The whole validation set is evaluated each epoch.
        recipe: "study", "corrected" or a ``recipes.Recipe``: optimizer family, monitor, checkpoint choice,
            early stopping, class balancing, label smoothing.
        stage: a ``study.Stage``: epochs, learning rate, amsgrad, plateau, and ``continues`` (keep the previous
            stage's optimizer and its state: no recompile), as ``recipe.apply`` resolves it.
        batch_size: the global batch size (split over a strategy's replicas).
        augmentation: a ``skinlib.augment.pipeline`` (None: no augmentation).
        out_dir: where the stage keeps its history, weights and resume backup (None: nothing kept).
        history: the merged history of the earlier stages (``fit``'s previous return value).
        seed: seeds Python, NumPy and the backend (``keras.utils.set_random_seed``) and the balanced sampling.
        resume: skip this stage if it finished in ``out_dir``, or continue it from its last finished epoch.
        class_weight: None (the recipe's ``balance``), "balanced", or {class index: weight}.
        run_eagerly: no graph compilation: slow per step, no compile time (tiny smoke runs).
        mixed_precision: require a model built with ``models.build(..., mixed_precision=True)``.
        strategy: a ``tf.distribute`` strategy; build the model inside ``with strategy.scope():``.
        callbacks: extra Keras callbacks, called after skinlib's own.
        verbose: Keras' (``"auto"``, 0, 1, 2) or ``"tqdm"`` (one bar per stage, ``tqdm.keras.TqdmCallback``).
        metadata: for a model built with ``metadata=fields``, ``{"train": vectors, "val": vectors}``
            (``data.metadata_vectors(parts, fields)``, rows as the images'); None (or zero-width vectors) for
            an image-only model. Augmentation changes the images only.
        tensorboard: a log folder: Keras' TensorBoard callback writes this stage under it, and ``hparams`` (the run's
            settings) go in once as TensorBoard's HParams record (``skinlib.tensorboard_logs``).
    """
    recipe = recipes.get(recipe)
    stage = recipe.apply(stage)
    _check_trainable(model, stage)
    data = Data.from_any(data).checked(model.inputs[0].shape[1:])
    vectors = fusion.part_vectors(model, metadata, {"train": len(data.train[0]), "val": len(data.val[0])})
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise TrainError(f"batch_size={batch_size!r}: give a positive int (the study's is study.get(...).batch_size)")
    if resume and out_dir is None:
        raise TrainError("resume=True needs the out_dir of the interrupted run")
    _check_precision(model, mixed_precision)
    _check_strategy(model, strategy)
    if not models.preprocess_of(model).adapted:
        raise TrainError("the model's Preprocess('standardize') layer has no mean/std: call "
                         "models.preprocess_of(model).adapt(train_images) first (the study used every image)")
    history = _empty_history() if history is None else history
    number = int(history["stage"].max()) + 1 if len(history) else 1
    with contextlib.ExitStack() as stack:
        folder = Path(out_dir) / f"stage{number}_{stage.layers}" if out_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="skinlib-stage-")))
        if resume and (folder / DONE).is_file():
            model.load_weights(folder / DONE)
            return _merge(history, _read_csv(folder / "history.csv"), number, stage.layers)
        if not resume:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        models.save_preprocess(model, folder)

        keras.utils.set_random_seed(seed)
        earlier = _stage_folder(out_dir, history, number - 1) if stage.continues else None
        training_model = _training_model(model, augmentation, stage, recipe, run_eagerly, strategy, earlier)
        stage_callbacks = [_LogLearningRate(),
                           keras.callbacks.BackupAndRestore(str(folder / "backup")),
                           _InferenceCheckpoint(model, folder / "last.weights.h5"),
                           _InferenceCheckpoint(model, folder / "best.weights.h5", monitor=recipe.monitor,
                                                mode=recipe.monitor_mode, save_best_only=True),
                           *schedule_callbacks(stage, recipe),
                           keras.callbacks.CSVLogger(str(folder / "history.csv"), append=resume)]
        if tensorboard is not None:
            tensorboard_logs.write_hparams(tensorboard, hparams or {})  # once: later stages find it written
            stage_callbacks.append(tensorboard_logs.callback(tensorboard, f"stage{number}_{stage.layers}"))
        if verbose == "tqdm":
            from tqdm.keras import TqdmCallback

            stage_callbacks.append(TqdmCallback(epochs=stage.epochs, verbose=0, desc=f"stage {number} ({stage.layers})"))
        ran = training_model.fit(**_training_inputs(data, batch_size, seed + number, class_weight, recipe,
                                                    vectors["train"]),
                                 validation_data=(fusion.inputs(model, data.val[0], vectors["val"]),
                                                  _onehot(data.val[1])),
                                 validation_batch_size=batch_size,
                                 epochs=stage.epochs, callbacks=stage_callbacks + list(callbacks or []),
                                 verbose=0 if verbose == "tqdm" else verbose)
        kept = folder / ("best.weights.h5" if recipe.restore_best else "last.weights.h5")
        if recipe.restore_best and kept.is_file():
            model.load_weights(kept)
        if out_dir is not None:
            state: dict = {}
            training_model.optimizer.save_own_variables(state)
            np.savez(folder / OPTIMIZER_STATE, **{key: np.asarray(value) for key, value in state.items()})
        _mark_done(model, folder, kept if ran.epoch and kept.is_file() and not callbacks else None)
        return _merge(history, _read_csv(folder / "history.csv"), number, stage.layers)


def _mark_done(model: keras.Model, folder: Path, same: Path | None) -> None:
    """Writes the finished stage's weights as ``DONE``, atomically (its presence means the stage finished): a copy
    of ``same`` where that checkpoint holds the model's weights (the recipe's best or last epoch, written by this
    call, and no caller's callback that could have changed them since), else saved anew. A copy spares serialising
    a deep model once more (seconds per stage for DenseNet201 or Inception-ResNet-V2)."""
    partial = folder / f"partial.{DONE}"  # Keras saves only to a name ending in .weights.h5
    if same is not None:
        shutil.copyfile(same, partial)
    else:
        model.save_weights(partial)
    os.replace(partial, folder / DONE)


def _stage_folder(out_dir, history: pd.DataFrame, number: int) -> Path | None:
    """The folder of stage ``number`` of ``history`` under ``out_dir``, if both are known."""
    rows = history[history["stage"] == number]
    return Path(out_dir) / f"stage{number}_{rows['layers'].iloc[0]}" if out_dir is not None and len(rows) else None


def _training_model(model, augmentation, stage, recipe: Recipe, run_eagerly: bool, strategy,
                    earlier: Path | None = None) -> keras.Model:
    """``augmentation`` then ``model``, compiled with a fresh optimizer, or the previous stage's when the stage
    continues it: the same wrapper and optimizer in this process, else the state saved in ``earlier`` (a resumed
    run in a new process)."""
    previous = _WRAPPERS.get(model)
    if stage.continues and previous is not None and previous[1] is augmentation:
        return previous[0]
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        image, *others = [keras.Input(shape=tensor.shape[1:], name=tensor.name) for tensor in model.inputs]
        augmented = augmentation(image) if augmentation is not None else image
        outputs = model([augmented, *others] if others else augmented)
        training_model = keras.Model([image, *others] if others else image, outputs, name=f"{model.name}_training")
        training_model.compile(optimizer=recipe.make_optimizer(stage),
                               loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
                               metrics=["accuracy", BalancedAccuracy()], run_eagerly=run_eagerly)
        if stage.continues:
            _restore_optimizer(training_model, earlier)
    _WRAPPERS[model] = (training_model, augmentation)
    return training_model


def _restore_optimizer(training_model: keras.Model, earlier: Path | None) -> None:
    """Loads the previous stage's optimizer state (steps, learning rate, moments) into a fresh wrapper."""
    path = earlier / OPTIMIZER_STATE if earlier is not None else None
    if path is None or not path.is_file():
        warnings.warn(
            f"this stage continues the previous stage's optimizer, but it is not in this process and "
            f"{'no out_dir was given' if path is None else f'{path} is missing'}: it starts a fresh optimizer "
            "(run the previous stage first in the same process, or resume with the same out_dir)", stacklevel=4)
        return
    optimizer = training_model.optimizer
    optimizer.build(training_model.trainable_variables)
    with np.load(path) as saved:
        state = {key: saved[key] for key in saved.files}
    if len(state) != len(optimizer.variables):
        raise TrainError(f"{path} holds {len(state)} optimizer variables, but this stage's optimizer has "
                         f"{len(optimizer.variables)}: the continued stage must train the same layers "
                         "(no models.set_trainable call between the two stages)")
    optimizer.load_own_variables(state)


def _check_trainable(model: keras.Model, stage) -> None:
    """Refuses a model whose ``models.set_trainable`` call named other layers or another BatchNorm mode."""
    applied = models.trainable_setting(model)
    if applied is not None and applied != (stage.layers, stage.bn):
        raise TrainError(
            f"the model was set for layers={applied[0]!r}, bn={applied[1]!r}, but this stage trains "
            f"layers={stage.layers!r} with bn={stage.bn!r}: call models.set_trainable(model, stage) with the same "
            "stage that fit gets (recipe.apply(stage), or a settings.Settings' stages)")


def schedule_callbacks(stage, recipe: Recipe) -> list:
    """The stage's ``ReduceLROnPlateau`` and the recipe's ``EarlyStopping`` (fine-tuning stages only), as
    ``fit`` adds them (``skinlib.fidelity`` reads them from here)."""
    found = []
    if stage.plateau is not None:
        p = stage.plateau
        found.append(keras.callbacks.ReduceLROnPlateau(monitor=recipe.monitor, mode=recipe.monitor_mode,
                                                       factor=p.factor, patience=p.patience, min_lr=p.min_lr,
                                                       cooldown=p.cooldown))
    if recipe.early_stopping and stage.layers != "head":
        found.append(keras.callbacks.EarlyStopping(monitor=recipe.monitor, mode=recipe.monitor_mode,
                                                   patience=recipe.early_stopping))
    return found


def _training_inputs(data: Data, batch_size: int, seed: int, class_weight, recipe: Recipe,
                     vectors=None) -> dict:
    """``fit`` arguments for the training set: NumPy arrays with Keras' own shuffling (about 1.6x faster under
    TensorFlow than a PyDataset, bench/train_throughput.py), or :class:`BalancedBatches` for sampling."""
    x, y = data.train
    if recipe.balance == "sampling" and class_weight is None:
        return {"x": BalancedBatches(x, y, batch_size, seed=seed, metadata=vectors)}
    if class_weight is None and recipe.balance == "class_weight":
        class_weight = "balanced"
    if class_weight == "balanced":
        class_weight = balanced_class_weight(y)
    elif class_weight is not None and not isinstance(class_weight, dict):
        raise TrainError(f"class_weight must be None, 'balanced' or a dict {{class index: weight}}, got {class_weight!r}")
    x = x if vectors is None else {fusion.IMAGE_INPUT: x, fusion.METADATA_INPUT: vectors}
    return {"x": x, "y": _onehot(y), "batch_size": batch_size, "shuffle": True,
            "class_weight": None if class_weight is None else {int(k): float(v) for k, v in class_weight.items()}}


def _onehot(y) -> np.ndarray:
    return keras.utils.to_categorical(y, NUM_CLASSES).astype("float32")


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="int64" if name in ("epoch", "stage", "stage_epoch") else
                                         ("object" if name == "layers" else "float64")) for name in HISTORY_COLUMNS})


def _read_csv(path: Path) -> pd.DataFrame:
    """A stage's CSVLogger file (the last row of each epoch, should an interrupted epoch repeat)."""
    frame = pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame({"epoch": []})
    return frame.drop_duplicates("epoch", keep="last").sort_values("epoch")


def _merge(history: pd.DataFrame, stage_rows: pd.DataFrame, number: int, layers: str) -> pd.DataFrame:
    rows = pd.DataFrame({
        "epoch": np.arange(len(stage_rows)) + len(history) + 1, "stage": number, "layers": layers,
        "stage_epoch": stage_rows["epoch"].to_numpy(dtype="int64") + 1,
        **{name: stage_rows[name].to_numpy(dtype="float64") if name in stage_rows else np.full(len(stage_rows), np.nan)
           for name in HISTORY_COLUMNS[4:]}})
    merged = pd.concat([history, rows], ignore_index=True) if len(history) else rows
    return merged.astype({"epoch": "int64", "stage": "int64", "stage_epoch": "int64"})[list(HISTORY_COLUMNS)]


def _check_precision(model: keras.Model, mixed_precision: bool) -> None:
    built_mixed = model.get_layer("head_dense").dtype_policy.name.startswith("mixed")
    if mixed_precision and not built_mixed:
        raise TrainError("mixed_precision=True needs a model built with it: models.build(name, ..., "
                         "mixed_precision=True) (a layer's dtype policy is fixed when it is created)")


def _check_strategy(model: keras.Model, strategy) -> None:
    if strategy is not None and not strategy.extended.variable_created_in_scope(model.weights[0].value):
        raise TrainError("the model was built outside the strategy: build it inside `with strategy.scope():` "
                         "(e.g. `with strategy.scope(): model = models.build(...)`), then call fit(..., strategy=strategy)")
