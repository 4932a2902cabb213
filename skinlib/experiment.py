"""The shared flow of the study's notebooks: parameters, data, model, training, evaluation, saving.

Notebooks 02-08 each train one model; they differ only in their parameters (the study step, image size,
epochs ...), so the code they run lives here, once::

    run = experiment.Experiment.from_parameters("03", globals())   # the notebook's parameter cell
    data = run.prepare()               # split, subset, image arrays (cached), optional ISIC 2018 test
    model = run.build()                # skinlib.models.build with the step's backbone
    history = run.train(model, data)   # skinlib.train.fit, both stages
    results = run.evaluate(model, data)
    run.save(model, history, results)  # the model (.keras) and a results JSON

Notebook 09 uses :class:`EnsembleExperiment`, which finds the models of 07 and 08 by the names they were
saved under (:func:`model_path`) and the split they were trained on (their results JSON).

Everything a run writes goes under its output folder::

    <out_dir>/models/<notebook>.keras        exported model (raw RGB images of any size in)
    <out_dir>/results/<notebook>.json        parameters, recipe, depth, parameter counts, every metric, time
    <out_dir>/figures/<notebook>/<name>.png  every figure shown in the notebook
    <out_dir>/training/<notebook>/           history.csv, best/last weights, resume checkpoint
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from skinlib import CLASSES, __version__, data as data_lib, study
from skinlib.errors import SkinlibError

PARAMETERS = ("data_dir", "images", "isic2018_dir", "protocol", "seed", "val_size", "recipe", "image_size",
              "epochs", "batch_size", "subset", "weights", "tta", "out_dir", "checkpoints", "eager")
"""Names of the parameters of notebooks 02-08 (their ``parameters`` cell)."""
ENSEMBLE_PARAMETERS = ("data_dir", "images", "isic2018_dir", "members", "tta", "out_dir", "eager")
"""Names of the parameters of notebook 09."""
PARTS = ("val", "test", "isic2018")
"""Sets a model is evaluated on: validation, test, and the external ISIC 2018 test when given."""


class ParameterError(SkinlibError, ValueError):
    """A notebook parameter with a wrong value; the message names it and the accepted values."""


# ---------------------------------------------------------------------------------------------------------
# Where a run's files go (one place, so notebook 09 finds what 07 and 08 saved)
# ---------------------------------------------------------------------------------------------------------

def model_path(out_dir: str | Path, step: str) -> Path:
    """The exported model of a study step: ``<out_dir>/models/<notebook>.keras``."""
    return Path(out_dir) / "models" / f"{study.get(step).notebook}.keras"


def results_path(out_dir: str | Path, step: str) -> Path:
    """The results JSON of a study step: ``<out_dir>/results/<notebook>.json``."""
    return Path(out_dir) / "results" / f"{study.get(step).notebook}.json"


def figures_dir(out_dir: str | Path, step: str) -> Path:
    """The figures folder of a study step: ``<out_dir>/figures/<notebook>/``."""
    return Path(out_dir) / "figures" / study.get(step).notebook


def training_dir(out_dir: str | Path, step: str) -> Path:
    """Training files (history, weights, checkpoint) of a study step: ``<out_dir>/training/<notebook>/``."""
    return Path(out_dir) / "training" / study.get(step).notebook


MASK_DIRS = ("HAM10000_segmentations_lesion_tschandl", "masks_600x450")
"""Folders of the official lesion masks (``<image_id>_segmentation.png``): the download's, the shared data's."""


def find_masks(data_dir: str | Path) -> Path | None:
    """The lesion-mask folder inside ``data_dir``, or None."""
    for name in MASK_DIRS:
        if (Path(data_dir) / name).is_dir():
            return Path(data_dir) / name
    return None


def figure_saver(out_dir: str | Path, step: str):
    """``save(fig, name)`` for a notebook: saves under the step's figures folder and returns ``fig``."""
    def save(fig, name: str):
        return save_figure(fig, out_dir, step, name)
    return save


def save_figure(fig, out_dir: str | Path, step: str, name: str, dpi: int = 110):
    """Save ``fig`` as ``<figures_dir>/<name>.png`` and return it (so a notebook cell shows it)."""
    folder = figures_dir(out_dir, step)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=dpi, bbox_inches="tight")
    return fig


# ---------------------------------------------------------------------------------------------------------
# Environment facts recorded with every result
# ---------------------------------------------------------------------------------------------------------

def backend() -> str:
    """The Keras backend in use ("tensorflow", "jax", "torch")."""
    import keras

    return keras.backend.backend()


def device() -> str:
    """The accelerator (or CPU) Keras computes on, in words."""
    import keras

    try:
        devices = [str(d) for d in keras.distribution.list_devices()]
    except Exception:  # not every backend implements device listing
        devices = []
    accelerators = [d for d in devices if not d.lower().startswith("cpu")]
    cpu = f"{platform.machine() or 'cpu'} CPU, {os.cpu_count()} cores"
    if accelerators:
        return f"{', '.join(accelerators)} (host: {cpu})"
    return cpu


def versions() -> dict[str, str]:
    """Versions of skinlib, Python, Keras and the backend library."""
    import keras

    found = {"skinlib": __version__, "python": platform.python_version(), "keras": keras.__version__}
    library = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend())
    if library:
        try:
            found[library] = __import__(library).__version__
        except ImportError:
            pass
    return found


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _jsonable(value):
    """``value`` with NumPy scalars, tuples, paths and NaN made JSON-safe."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN (undefined) and inf (e.g. a diverged loss) are not JSON
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value


def write_json(path: str | Path, content: Mapping[str, Any]) -> Path:
    """Write ``content`` as strict JSON (NaN as null) to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(content), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_results(out_dir: str | Path, step: str) -> dict[str, Any]:
    """The results JSON a notebook saved, with a clear error when it has not run."""
    path = results_path(out_dir, step)
    if not path.is_file():
        notebook = study.get(step).notebook
        raise FileNotFoundError(f"no results of {notebook} at '{path}': run notebooks/{notebook}.ipynb (or "
                                f"`python run_all.py --only {study.get(step).number}`) with out_dir={str(out_dir)!r}")
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------------

def _optional_int(name: str, value, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"parameter {name}={value!r}: give an integer >= {minimum}, or None")
    return int(value)


@dataclass(frozen=True)
class Params:
    """The parameters of a training notebook (02-08), checked.

    Attributes:
        step: the study step ("02" ... "08"); gives the backbone and the fine-tuning stage.
        data_dir: the HAM10000 folder (metadata and images).
        images: image folder inside ``data_dir`` (e.g. "images_200x150"); None: the official part_1/part_2.
        isic2018_dir: ISIC 2018 Task 3 test folder for an external test; None: skipped.
        protocol: "seed" (the study's image-level split, which leaks lesions) or "grouped" (by lesion).
        seed: random seed of the split, the subset and the training.
        val_size: validation share (see ``skinlib.data.split``); the study's baseline used 0.2, the others 0.1.
        recipe: "seed" (the study's) or "corrected".
        image_size: (height, width) of the model input; None: the study's for this backbone.
        epochs: None (the study's epochs per stage) or an int for every stage.
        batch_size: None (the study's) or an int.
        subset: None (every image) or the size of a class-stratified subset (smoke runs).
        weights: "imagenet", None (random), or a weights file.
        tta: test-time augmentation for evaluation: None, True, "flips" or "d4".
        out_dir: the run's output folder.
        checkpoints: keep best/last weights and a resume checkpoint under ``<out_dir>/training/<notebook>/``.
        eager: run Keras eagerly (no graph compilation: for tiny smoke runs).
    """

    step: str
    data_dir: str
    images: str | None = None
    isic2018_dir: str | None = None
    protocol: str = "seed"
    seed: int = 0
    val_size: float = 0.1
    recipe: str = "seed"
    image_size: tuple[int, int] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    subset: int | None = None
    weights: str | None = "imagenet"
    tta: bool | str | None = None
    out_dir: str = "../outputs/manual"
    checkpoints: bool = True
    eager: bool = False

    def __post_init__(self):
        from skinlib import backbones, recipes
        from skinlib.data.splits import PROTOCOLS

        step = study.get(self.step)
        if step.model is None:
            raise ParameterError(f"step {step.number} ({step.notebook}) trains no single model; "
                                 f"use a step of {', '.join(s.number for s in study.STEPS if s.model)}")
        object.__setattr__(self, "step", step.number)
        if self.protocol not in PROTOCOLS:
            raise ParameterError(f"parameter protocol={self.protocol!r}; accepted: {', '.join(PROTOCOLS)}")
        if self.recipe not in recipes.RECIPES:
            raise ParameterError(f"parameter recipe={self.recipe!r}; accepted: {', '.join(recipes.RECIPES)}")
        if not isinstance(self.val_size, (int, float)) or not 0 < self.val_size < 1:
            raise ParameterError(f"parameter val_size={self.val_size!r}: give a fraction between 0 and 1")
        spec = backbones.get(step.model)
        size = self.image_size
        if size is not None:
            try:
                size = tuple(int(v) for v in size)
            except (TypeError, ValueError):
                size = ()
            if len(size) != 2 or min(size) < spec.min_size:
                raise ParameterError(
                    f"parameter image_size={self.image_size!r}: give [height, width], each at least "
                    f"{spec.min_size} for {spec.key} (the study used {list(spec.input_size)}), or None")
            object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "seed", _optional_int("seed", self.seed, minimum=0))
        object.__setattr__(self, "epochs", _optional_int("epochs", self.epochs))
        object.__setattr__(self, "batch_size", _optional_int("batch_size", self.batch_size))
        object.__setattr__(self, "subset", _optional_int("subset", self.subset, minimum=10))
        if self.tta not in (None, False, True, "flips", "d4", "auto"):
            raise ParameterError(f"parameter tta={self.tta!r}; accepted: None, True, 'flips', 'd4'")
        for name in ("data_dir", "out_dir"):
            if not isinstance(getattr(self, name), (str, Path)) or not str(getattr(self, name)):
                raise ParameterError(f"parameter {name}={getattr(self, name)!r}: give a folder path")

    @classmethod
    def from_namespace(cls, step: str, namespace: Mapping[str, Any]) -> "Params":
        """The parameters named in :data:`PARAMETERS` found in ``namespace`` (a notebook's ``globals()``)."""
        return cls(step=step, **{name: namespace[name] for name in PARAMETERS if name in namespace})

    @property
    def study_step(self) -> study.Step:
        return study.get(self.step)

    @property
    def model(self) -> str:
        """The backbone key."""
        return self.study_step.model

    @property
    def stage(self) -> str:
        """The fine-tuning stage ("top" or "all")."""
        return self.study_step.stage

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model input: ``image_size`` or the study's."""
        from skinlib import backbones

        return self.image_size or backbones.get(self.model).input_size

    def to_dict(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in ("step", *PARAMETERS)}

    def frame(self) -> pd.DataFrame:
        """The parameters as a two-column table (for the notebook)."""
        rows = {"notebook": self.study_step.notebook, "model": self.model, "fine-tuning stage": self.stage,
                **{k: v for k, v in self.to_dict().items() if k != "step"}, "input size": list(self.input_size),
                "keras backend": backend()}
        return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=pd.Index(list(rows), name="parameter"))

    def _repr_html_(self) -> str:
        return self.frame().to_html()


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """The data of one run: the split metadata and the image arrays of each part (uint8, RGB)."""

    meta: pd.DataFrame
    split: Any  # skinlib.data.Split
    size: tuple[int, int]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    frames: dict[str, pd.DataFrame]

    def fit_data(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train": (x, y), "val": (x, y)}`` for ``skinlib.train.fit``."""
        return {"train": self.arrays["train"], "val": self.arrays["val"]}

    def summary(self) -> pd.DataFrame:
        """Images per class and part, and images sharing a lesion with training (plus the external test)."""
        table = self.split.summary()
        if "isic2018" in self.frames:
            external = self.frames["isic2018"]["dx"].value_counts().reindex(CLASSES, fill_value=0)
            table["isic2018"] = [*external.to_numpy(), len(self.frames["isic2018"]), 0]
        return table

    def sizes(self) -> dict[str, int]:
        return {part: int(len(frame)) for part, frame in self.frames.items()}


def prepare_data(data_dir, images=None, *, protocol="seed", seed=0, val_size=0.1, subset=None,
                 size=(192, 256), isic2018_dir=None, progress=True) -> Prepared:
    """Load the metadata, take a stratified subset, split it, and decode each part at ``size``."""
    meta = data_lib.load_metadata(data_dir, images=images)
    meta = data_lib.subset(meta, subset, seed=seed)
    parts = data_lib.split(meta, protocol=protocol, seed=seed, val_size=val_size)
    frames = dict(parts.parts())
    if isic2018_dir:
        frames["isic2018"] = data_lib.load_isic2018_test(isic2018_dir)
    arrays = {name: (data_lib.load_images(frame, size=size, progress=progress), frame["label"].to_numpy())
              for name, frame in frames.items()}
    return Prepared(meta=meta, split=parts, size=tuple(size), arrays=arrays, frames=frames)


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Results:
    """Predictions and reports of one model (or ensemble) on each evaluated part."""

    proba: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    reports: dict[str, Any]  # part -> skinlib.evaluate.Report
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Headline metrics (rows) for each part (columns), with 95 % intervals where computed."""
        columns = {}
        for part, report in self.reports.items():
            frame = report.to_frame()
            columns[part] = [
                f"{row.value:.3f}" + (f" [{row.ci_low:.3f}, {row.ci_high:.3f}]" if not math.isnan(row.ci_low) else "")
                if not math.isnan(row.value) else "–"
                for row in frame.itertuples()]
            index = frame.index
        return pd.DataFrame(columns, index=index)

    def _repr_html_(self) -> str:
        return self.table().to_html()


def compare_with_study(step: str, results: Results) -> pd.DataFrame:
    """The study's reported numbers beside this run's (accuracy in percent)."""
    reported = study.get(step)
    val = results.reports.get("val")
    test = results.reports.get("test")
    rows = {
        "validation accuracy (%)": (reported.validation_accuracy, None if val is None else 100 * val.accuracy),
        "test accuracy (%)": (reported.test_accuracy, None if test is None else 100 * test.accuracy),
        "test balanced accuracy (%)": (None, None if test is None else 100 * test.balanced_accuracy),
        "test macro F1": (None, None if test is None else test.macro_f1),
        "test macro AUC": (None, None if test is None else test.roc_auc_macro),
    }
    frame = pd.DataFrame(rows, index=["study", "this run"]).T
    frame.index.name = study.get(step).notebook
    return frame


def macro_f1_along(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Macro F1 over ``labels`` of label arrays along the last axis (vectorised over bootstrap resamples);
    the definition of ``sklearn.metrics.f1_score(average="macro", labels=labels, zero_division=0)``."""
    scores = []
    for k in labels:
        truth, called = y_true == k, y_pred == k
        tp = (truth & called).sum(axis=-1)
        wrong = (truth ^ called).sum(axis=-1)  # false positives + false negatives
        scores.append(np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
    return np.mean(scores, axis=0)


def macro_auc_along(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Mean one-vs-rest ROC AUC over the classes with positives and negatives, along the second-last axis of
    ``proba`` (…, N, classes) and the last of ``y_true`` (…, N): the Mann-Whitney form of the AUC, ties
    counted half, as ``sklearn.metrics.roc_auc_score``."""
    from scipy.stats import rankdata

    aucs = []
    n = y_true.shape[-1]
    for k in range(proba.shape[-1]):
        positive = y_true == k
        n_pos = positive.sum(axis=-1)
        n_neg = n - n_pos
        ranks = rankdata(proba[..., k], axis=-1)
        rank_sum = np.where(positive, ranks, 0.0).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append(np.where((n_pos > 0) & (n_neg > 0), (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg),
                                 np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # resamples without a class: NaN, left out
        return np.nanmean(np.stack(aucs), axis=0)


def add_intervals(report, y_true, proba, seed: int = 0, n_resamples: int = 1000) -> None:
    """Add paired percentile bootstrap intervals of macro F1 and macro ROC AUC to ``report.intervals`` (the
    report has them for accuracy and balanced accuracy). Resamples where a metric is undefined (a tiny test set
    drawn with one class only) are left out rather than making the interval undefined."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    if len(y_true) < 2:
        return
    y_pred = proba.argmax(axis=1)
    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))  # the classes the report's macro F1 averages
    index = np.random.default_rng(seed).integers(0, len(y_true), size=(n_resamples, len(y_true)))
    alpha = (1 - report.confidence_level) / 2
    for name, values in (("macro_f1", macro_f1_along(y_true[index], y_pred[index], labels)),
                         ("roc_auc_macro", macro_auc_along(y_true[index], proba[index]))):
        if np.isnan(values).all():
            continue
        low, high = np.nanquantile(values, [alpha, 1 - alpha])
        report.intervals[name] = (float(low), float(high))


def evaluate_probas(proba: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], seed: int = 0) -> Results:
    """Reports of each part's probabilities (with intervals for accuracy, balanced accuracy, macro F1 and
    AUC); a temperature fitted on validation gives a calibrated test report."""
    from skinlib import calibration, evaluate

    reports = {part: evaluate.report(labels[part], p, seed=seed) for part, p in proba.items()}
    for part, report in reports.items():
        add_intervals(report, labels[part], proba[part], seed=seed)
    extra: dict[str, Any] = {}
    if "val" in proba and "test" in proba:
        scaling = calibration.TemperatureScaling().fit(proba["val"], labels["val"])
        extra["temperature"] = scaling.temperature_
        reports["test_calibrated"] = evaluate.report(labels["test"], scaling.transform(proba["test"]), seed=seed)
    return Results(proba=dict(proba), labels=dict(labels), reports=reports, extra=extra)


# ---------------------------------------------------------------------------------------------------------
# One training notebook (02-08)
# ---------------------------------------------------------------------------------------------------------

def depth(model) -> int:
    """Layers as the study (Keras 2) counted them: input, backbone and head; skinlib's preprocessing layer,
    which has no weights and which the study's models did not have, is not counted."""
    from skinlib import models

    return sum(1 for layer in model.layers if layer.name != models.PREPROCESS_LAYER)


class Experiment:
    """The flow of one training notebook. Build it with :meth:`from_parameters`."""

    def __init__(self, params: Params):
        self.params = params
        self.started = time.perf_counter()
        self.started_at = _now()
        self.timings: dict[str, float] = {}
        if params.eager:
            self._set_eager()

    @classmethod
    def from_parameters(cls, step: str, namespace: Mapping[str, Any]) -> "Experiment":
        """The experiment of ``step`` with the parameters found in ``namespace`` (a notebook's ``globals()``)."""
        return cls(Params.from_namespace(step, namespace))

    @staticmethod
    def _set_eager() -> None:
        """Eager smoke runs: show full tracebacks (models get ``run_eagerly`` where they are made)."""
        import keras

        keras.config.disable_traceback_filtering()

    @property
    def step(self) -> study.Step:
        return self.params.study_step

    def _repr_html_(self) -> str:
        return self.params._repr_html_()

    # -- data ---------------------------------------------------------------------------------------------
    def prepare(self) -> Prepared:
        """Split (with the step's protocol, seed and subset) and decode the images at the input size."""
        p = self.params
        tick = time.perf_counter()
        prepared = prepare_data(p.data_dir, p.images, protocol=p.protocol, seed=p.seed, val_size=p.val_size,
                                subset=p.subset, size=p.input_size, isic2018_dir=p.isic2018_dir)
        self.timings["data_s"] = time.perf_counter() - tick
        return prepared

    # -- model --------------------------------------------------------------------------------------------
    def build(self):
        """The step's model (``skinlib.models.build``) at the input size, with the recipe's preprocessing."""
        from skinlib import models

        p = self.params
        model = models.build(p.model, input_shape=(*p.input_size, 3), weights=p.weights, preprocess=p.recipe)
        model.run_eagerly = p.eager
        return model

    def describe(self, model) -> pd.DataFrame:
        """Depth and parameter counts of ``model`` beside the study's."""
        from skinlib import models

        counts = models.param_counts(model)
        reported = self.step
        return pd.DataFrame({
            "study": [reported.depth, reported.params],
            "this model": [depth(model), counts["total"]],
        }, index=pd.Index(["depth (layers)", "parameters"], name=self.step.notebook)).astype("Int64")

    # -- training -----------------------------------------------------------------------------------------
    def train(self, model, prepared: Prepared, verbose: int | str = 2) -> pd.DataFrame:
        """``skinlib.train.fit`` with the step's recipe and stage; returns the merged history of both stages."""
        from skinlib import train

        p = self.params
        tick = time.perf_counter()
        out_dir = training_dir(p.out_dir, p.step) if p.checkpoints else None
        history = train.fit(model, prepared.fit_data(), p.recipe, out_dir=out_dir,
                            epochs=p.epochs, batch_size=p.batch_size, finetune=p.stage, seed=p.seed,
                            run_eagerly=p.eager, verbose=verbose)
        self.timings["train_s"] = time.perf_counter() - tick
        return history

    # -- evaluation ---------------------------------------------------------------------------------------
    def predict(self, model, prepared: Prepared) -> dict[str, np.ndarray]:
        """Class probabilities on every evaluated part (with the ``tta`` parameter)."""
        from skinlib import evaluate

        batch = self.params.batch_size or 64
        return {part: evaluate.predict(model, prepared.arrays[part][0], tta=self.params.tta, batch_size=batch)
                for part in PARTS if part in prepared.arrays}

    def evaluate(self, model, prepared: Prepared) -> Results:
        """Reports on validation, test (and ISIC 2018), plus a temperature-calibrated test report."""
        tick = time.perf_counter()
        proba = self.predict(model, prepared)
        labels = {part: prepared.arrays[part][1] for part in proba}
        results = evaluate_probas(proba, labels, seed=self.params.seed)
        self.timings["evaluate_s"] = time.perf_counter() - tick
        return results

    def compare_with_study(self, results: Results) -> pd.DataFrame:
        """The study's reported accuracies beside this run's, with the metrics the study did not report."""
        return compare_with_study(self.step.number, results)

    # -- figures ------------------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return figures_dir(self.params.out_dir, self.step.number) / f"{name}.png"

    def curves(self, history: pd.DataFrame):
        """Loss, accuracy and learning rate of both stages, the stage boundary marked."""
        from skinlib import figures

        return figures.training_curves(history, path=self._path("training_curves"),
                                       title=f"{self.step.title}: training curves")

    def confusion(self, results: Results, part: str = "test"):
        """Raw and normalised confusion matrices on ``part``."""
        from skinlib import figures

        return figures.confusion_matrices(results.labels[part], results.proba[part],
                                          path=self._path(f"confusion_{part}"), title=f"{part} set")

    def roc(self, results: Results, part: str = "test"):
        """One-vs-rest ROC curves on ``part``."""
        from skinlib import figures

        return figures.roc_curves(results.labels[part], results.proba[part], path=self._path(f"roc_{part}"),
                                  title=f"one-vs-rest ROC curves, {part} set")

    def reliability(self, results: Results):
        """Reliability of the test probabilities, before and after temperature scaling fitted on validation."""
        from skinlib import calibration, figures

        sets = {"as trained": results.proba["test"]}
        if results.extra.get("temperature") is not None:
            sets[f"temperature {results.extra['temperature']:.2f}"] = calibration.apply_temperature(
                results.proba["test"], results.extra["temperature"])
        return figures.reliability_diagram(results.labels["test"], sets, path=self._path("reliability_test"),
                                           title="reliability on the test set")

    def mistakes(self, prepared: Prepared, results: Results, part: str = "test", n: int = 12):
        """The most confident wrong predictions on ``part``."""
        from skinlib import figures

        return figures.confident_mistakes(prepared.arrays[part][0], results.labels[part], results.proba[part],
                                          n=n, path=self._path(f"mistakes_{part}"))

    def gradcam(self, model, prepared: Prepared, n: int = 8, scored: int = 64):
        """Grad-CAM on the first ``n`` test images, and the share of the heat that falls on the lesion (the
        official masks in ``data_dir``) over the first ``scored``: ``(figure, focus)``, where ``focus`` is a
        table (image_id, dx, lesion focus) or None when ``data_dir`` has no masks."""
        from skinlib import figures, gradcam

        images, labels = prepared.arrays["test"]
        count = min(len(images), max(n, scored))
        explainer = gradcam.GradCAM(model)
        heat = np.concatenate([explainer(np.asarray(images[start:min(start + 32, count)]))
                               for start in range(0, count, 32)])
        focus, titles = None, [CLASSES[label] for label in labels[:min(n, count)]]
        masks = find_masks(self.params.data_dir)
        if masks is not None:
            rows = []
            for i, image_id in enumerate(prepared.frames["test"]["image_id"].iloc[:count]):
                path = masks / f"{image_id}_segmentation.png"
                share = gradcam.lesion_focus(heat[i], gradcam.load_mask(path, heat[i].shape)) if path.is_file() else np.nan
                rows.append({"image_id": image_id, "dx": CLASSES[labels[i]], "lesion focus": share})
            focus = pd.DataFrame(rows)
            titles = [f"{title} | focus {share:.2f}" for title, share in zip(titles, focus["lesion focus"])]
            self.lesion_focus = float(focus["lesion focus"].mean())  # NaN-skipping mean; None in JSON if none
        fig = figures.gradcam_grid(images[: len(titles)], heat[: len(titles)], titles=titles,
                                   path=self._path("gradcam_test"), title="Grad-CAM on test images (true class)")
        return fig, focus

    # -- saving -------------------------------------------------------------------------------------------
    def save(self, model, history: pd.DataFrame, results: Results, prepared: Prepared | None = None) -> dict[str, Path]:
        """Export the model and write the results JSON; returns their paths."""
        from skinlib import export, models, recipes

        p = self.params
        recipe = recipes.get(p.recipe)
        model_file = export.export(model, model_path(p.out_dir, p.step), recipe=recipe, image_size=p.input_size)
        counts = models.param_counts(model)
        total_s = time.perf_counter() - self.started
        content = {
            "notebook": self.step.notebook,
            "step": self.step.number,
            "title": self.step.title,
            "model": p.model,
            "stage": p.stage,
            "protocol": p.protocol,
            "recipe": dataclasses.asdict(recipe),
            "params": p.to_dict(),
            "input_size": list(p.input_size),
            "depth": depth(model),
            "parameters": counts,
            "data": None if prepared is None else {
                **prepared.sizes(),
                "test_images_sharing_a_lesion_with_train": prepared.split.shared_lesions("test"),
                "val_images_sharing_a_lesion_with_train": prepared.split.shared_lesions("val"),
            },
            "metrics": {part: report.to_dict() for part, report in results.reports.items()},
            "temperature": results.extra.get("temperature"),
            "lesion_focus": getattr(self, "lesion_focus", None),
            "history": history.to_dict(orient="records"),
            "study": dataclasses.asdict(self.step),
            "time": {**{k: round(v, 2) for k, v in self.timings.items()}, "total_s": round(total_s, 2),
                     "started": self.started_at, "finished": _now()},
            "device": device(),
            "backend": backend(),
            "versions": versions(),
            "model_file": str(model_file),
        }
        return {"model": model_file, "results": write_json(results_path(p.out_dir, p.step), content)}


# ---------------------------------------------------------------------------------------------------------
# The ensemble notebook (09)
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnsembleParams:
    """The parameters of notebook 09: where the data is, which saved models to average, where to write.

    The split (protocol, seed, validation share, subset) is the members' own, read from their results JSON.
    """

    data_dir: str
    images: str | None = None
    isic2018_dir: str | None = None
    members: tuple[str, ...] = ("07", "08")
    tta: bool | str | None = None
    out_dir: str = "../outputs/manual"
    eager: bool = False

    def __post_init__(self):
        if isinstance(self.members, str) or len(self.members) < 2:
            raise ParameterError(f"parameter members={self.members!r}: give at least two steps, e.g. ['07', '08']")
        steps = []
        for member in self.members:
            try:
                step = study.get(member)
            except KeyError as error:
                raise ParameterError(f"parameter members: {error.args[0]}") from None
            if step.model is None:
                raise ParameterError(f"parameter members: {step.notebook} saves no model")
            steps.append(step.number)
        object.__setattr__(self, "members", tuple(steps))
        if self.tta not in (None, False, True, "flips", "d4", "auto"):
            raise ParameterError(f"parameter tta={self.tta!r}; accepted: None, True, 'flips', 'd4'")

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> "EnsembleParams":
        return cls(**{name: namespace[name] for name in ENSEMBLE_PARAMETERS if name in namespace})

    def to_dict(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in ENSEMBLE_PARAMETERS}

    def frame(self) -> pd.DataFrame:
        rows = {**self.to_dict(), "keras backend": backend()}
        return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=pd.Index(list(rows), name="parameter"))


SPLIT_KEYS = ("protocol", "seed", "val_size", "subset")
"""Member parameters that must agree for their predictions to be on the same images."""
ENSEMBLES = ("ensemble", "weighted ensemble")
"""The two ensembles of notebook 09: the plain average (the study's), and weights fitted on validation."""


class EnsembleExperiment:
    """The flow of notebook 09: load the saved members, average them, compare with each member.

    ::

        ens = experiment.EnsembleExperiment.from_parameters(globals())
        data = ens.prepare()                 # the members' split, at each member's input size
        models = ens.load_models()           # <out_dir>/models/07_retrain_inception_v3.keras ...
        probas = ens.predict(models, data)   # {part: {member: probabilities}}
        weights = ens.fit_weights(probas)    # on validation only
        combined = ens.combine(probas, weights)
        results = ens.evaluate(combined)     # {model or ensemble: Results}
        ens.compare(combined)                # gains over each member, paired bootstrap + McNemar
    """

    STEP = "09"

    def __init__(self, params: EnsembleParams):
        self.params = params
        self.started = time.perf_counter()
        self.started_at = _now()
        self.members = {number: read_results(params.out_dir, number) for number in params.members}
        self.labels: dict[str, np.ndarray] = {}
        self.weights: dict[str, float] | None = None
        self._check_same_split()
        if params.eager:
            Experiment._set_eager()

    @classmethod
    def from_parameters(cls, namespace: Mapping[str, Any]) -> "EnsembleExperiment":
        """The ensemble experiment with the parameters found in ``namespace`` (the notebook's ``globals()``)."""
        return cls(EnsembleParams.from_namespace(namespace))

    @property
    def step(self) -> study.Step:
        return study.get(self.STEP)

    def _repr_html_(self) -> str:
        return self.params.frame().to_html()

    def _check_same_split(self) -> None:
        first_number, first = next(iter(self.members.items()))
        for number, other in self.members.items():
            for key in SPLIT_KEYS:
                if first["params"].get(key) != other["params"].get(key):
                    raise ParameterError(
                        f"members {first_number} and {number} were trained on different splits: {key}="
                        f"{first['params'].get(key)!r} vs {other['params'].get(key)!r}; re-run them with the same "
                        f"{', '.join(SPLIT_KEYS)}")

    def split_params(self) -> dict[str, Any]:
        """protocol, seed, val_size and subset of the members' split."""
        return {key: next(iter(self.members.values()))["params"].get(key) for key in SPLIT_KEYS}

    @staticmethod
    def name(number: str) -> str:
        """The display name of a member: its notebook."""
        return study.get(number).notebook

    def members_table(self) -> pd.DataFrame:
        """Each member's saved model file, input size, recipe and accuracy."""
        rows = []
        for number, result in self.members.items():
            rows.append({"notebook": result["notebook"], "model": result["model"], "stage": result["stage"],
                         "input size": result["input_size"], "recipe": result["recipe"]["name"],
                         "val accuracy": result["metrics"]["val"]["metrics"]["accuracy"],
                         "test accuracy": result["metrics"]["test"]["metrics"]["accuracy"],
                         "model file": str(model_path(self.params.out_dir, number))})
        return pd.DataFrame(rows).set_index("notebook")

    def _path(self, name: str) -> Path:
        return figures_dir(self.params.out_dir, self.STEP) / f"{name}.png"

    # -- the flow -----------------------------------------------------------------------------------------
    def prepare(self) -> dict[str, Prepared]:
        """The members' split, decoded at each member's own input size (keyed by member name)."""
        split = self.split_params()
        prepared = {}
        for number, result in self.members.items():
            prepared[self.name(number)] = prepare_data(
                self.params.data_dir, self.params.images, protocol=split["protocol"], seed=split["seed"],
                val_size=split["val_size"], subset=split["subset"], size=tuple(result["input_size"]),
                isic2018_dir=self.params.isic2018_dir)
        first = next(iter(prepared.values()))
        self.labels = {part: first.arrays[part][1] for part in PARTS if part in first.arrays}
        return prepared

    def load_models(self) -> dict[str, Any]:
        """The members' exported models, by the names 07 and 08 saved them under (:func:`model_path`)."""
        from skinlib import export

        loaded = {}
        for number in self.members:
            model = export.load(model_path(self.params.out_dir, number))
            model.run_eagerly = self.params.eager
            loaded[self.name(number)] = model
        return loaded

    def predict(self, models: Mapping[str, Any], prepared: Mapping[str, Prepared]) -> dict[str, dict[str, np.ndarray]]:
        """``{part: {member: probabilities}}`` on validation, test (and ISIC 2018)."""
        from skinlib import evaluate

        return {part: {name: evaluate.predict(model, prepared[name].arrays[part][0], tta=self.params.tta)
                       for name, model in models.items()} for part in self.labels}

    def fit_weights(self, probas: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
        """Member weights minimising the validation log loss (fitted on validation only, never on test)."""
        from skinlib import ensemble

        self.weights = ensemble.fit_weights(dict(probas["val"]), self.labels["val"])
        return self.weights

    def combine(self, probas, weights: Mapping[str, float]) -> dict[str, dict[str, np.ndarray]]:
        """Each part's members plus "ensemble" (the plain average) and "weighted ensemble"."""
        from skinlib import ensemble

        return {part: {**by_member, "ensemble": ensemble.average(dict(by_member)),
                       "weighted ensemble": ensemble.average(dict(by_member), dict(weights))}
                for part, by_member in probas.items()}

    def evaluate(self, combined) -> dict[str, Results]:
        """Reports of every member and ensemble on every part, keyed by model name."""
        names = list(next(iter(combined.values())))
        return {name: evaluate_probas({part: combined[part][name] for part in combined}, self.labels)
                for name in names}

    def summary(self, results: Mapping[str, Results], part: str = "test") -> pd.DataFrame:
        """Headline metrics of every model on ``part`` (rows: models)."""
        rows = {name: {**res.reports[part].metrics(),
                       **{f"{k} CI": tuple(round(v, 4) for v in bounds)
                          for k, bounds in res.reports[part].intervals.items()}}
                for name, res in results.items()}
        return pd.DataFrame(rows).T

    def compare(self, combined, part: str = "test", reference: str = "ensemble") -> pd.DataFrame:
        """``skinlib.ensemble.compare`` on ``part``: each model's metrics and the gain of ``reference`` over
        each other model, with a paired bootstrap interval and McNemar's exact test."""
        from skinlib import ensemble

        return ensemble.compare(self.labels[part], dict(combined[part]), reference=reference)

    def confusion(self, combined, name: str = "ensemble", part: str = "test"):
        """Confusion matrices of ``name`` on ``part``."""
        from skinlib import figures

        return figures.confusion_matrices(self.labels[part], combined[part][name],
                                          path=self._path(f"confusion_{part}"), title=f"{name}, {part} set")

    def roc(self, combined, name: str = "ensemble", part: str = "test"):
        """One-vs-rest ROC curves of ``name`` on ``part``."""
        from skinlib import figures

        return figures.roc_curves(self.labels[part], combined[part][name], path=self._path(f"roc_{part}"),
                                  title=f"{name}: one-vs-rest ROC curves, {part} set")

    def compare_with_study(self, results: Mapping[str, Results]) -> pd.DataFrame:
        """The study's reported ensemble accuracy beside this run's plain and weighted ensembles."""
        table = compare_with_study(self.STEP, results["ensemble"])
        weighted = results["weighted ensemble"].reports
        table.loc["weighted ensemble: test accuracy (%)"] = (None, 100 * weighted["test"].accuracy)
        return table

    def save(self, results: Mapping[str, Results], comparison: pd.DataFrame) -> dict[str, Path]:
        """Write the ensemble's results JSON (``metrics``: the plain average, as the study reported)."""
        split = self.split_params()
        members = [m for m in results if m not in ENSEMBLES]
        content = {
            "notebook": self.step.notebook,
            "step": self.STEP,
            "title": self.step.title,
            "model": "ensemble",
            "stage": None,
            "protocol": split["protocol"],
            "recipe": {"name": "+".join(sorted({m["recipe"]["name"] for m in self.members.values()}))},
            "params": {**self.params.to_dict(), **split},
            "members": {self.name(n): str(model_path(self.params.out_dir, n)) for n in self.members},
            "weights": self.weights,
            "depth": None,
            "parameters": {"total": sum(m["parameters"]["total"] for m in self.members.values())},
            "metrics": {part: report.to_dict() for part, report in results["ensemble"].reports.items()},
            "weighted_metrics": {part: report.to_dict() for part, report in results["weighted ensemble"].reports.items()},
            "member_metrics": {name: {part: r.to_dict() for part, r in results[name].reports.items()} for name in members},
            "comparison": comparison.reset_index().to_dict(orient="records"),
            "study": dataclasses.asdict(self.step),
            "time": {"total_s": round(time.perf_counter() - self.started, 2), "started": self.started_at,
                     "finished": _now()},
            "device": device(),
            "backend": backend(),
            "versions": versions(),
        }
        return {"results": write_json(results_path(self.params.out_dir, self.STEP), content)}
