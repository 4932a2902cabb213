"""A run's folder and its results records: written and read here only (notebooks, run_all.py, notebook 09).

::

    run = outputs.RunFolder("../outputs/manual", "04")
    run.model           # <out>/models/04_finetune_inception_v3.keras
    run.figure("roc")   # <out>/figures/04_finetune_inception_v3/roc.png
    run.training        # <out>/training/04_finetune_inception_v3/   (train.fit's out_dir)
    run.predictions     # <out>/predictions/04_finetune_inception_v3.csv   (and .isic2018.csv: the external test)
    run.tensorboard     # <out>/tensorboard/04_finetune_inception_v3/   (tensorboard --logdir <out>)
    outputs.write_record(run, outputs.record(settings, reports={...}, model=model))
    outputs.read_record("../outputs/manual", "07")["metrics"]["test"]["metrics"]["accuracy"]
    outputs.headline(record)   # the flat numbers run_all.py's tables show
    outputs.write_predictions(run, parts.test, proba["test"])   # one row per test image: ids, label, probabilities

A record is strict JSON (NaN and infinities become null): the run's resolved settings (``settings.Settings``, as
"parameters", and its recipe), its reports (``to_dict`` of ``skinlib.evaluate.Report``), the model's depth and
parameter counts, the study's reported numbers, the merged training history, and where and how long it ran. Its
structure is known here only: :func:`headline` reads it for everyone else.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from skinlib import __version__, study


@dataclass(frozen=True)
class RunFolder:
    """Where one notebook of a run writes: ``<out_dir>/{models,results,figures,training}/...``."""

    out_dir: Path
    notebook: str

    def __init__(self, out_dir: str | Path, step: str):
        object.__setattr__(self, "out_dir", Path(out_dir))
        object.__setattr__(self, "notebook", study.get(step).notebook)

    @property
    def model(self) -> Path:
        """The exported model: ``<out_dir>/models/<notebook>.keras``."""
        return self.out_dir / "models" / f"{self.notebook}.keras"

    @property
    def record(self) -> Path:
        """The results record: ``<out_dir>/results/<notebook>.json``."""
        return self.out_dir / "results" / f"{self.notebook}.json"

    @property
    def predictions(self) -> Path:
        """The test images' predictions: ``<out_dir>/predictions/<notebook>.csv`` (:func:`write_predictions`)."""
        return self.predictions_of("test")

    def predictions_of(self, part: str) -> Path:
        """A part's predictions: "test" at :attr:`predictions`, "isic2018" (the external test) beside it as
        ``<notebook>.isic2018.csv``."""
        if part not in PREDICTION_PARTS:
            raise ValueError(f"unknown predictions part {part!r}; accepted: {', '.join(PREDICTION_PARTS)}")
        suffix = "" if part == "test" else f".{part}"
        return self.out_dir / "predictions" / f"{self.notebook}{suffix}.csv"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's log folder of the run: ``<out_dir>/tensorboard/<notebook>`` (``skinlib.tensorboard_logs``)."""
        return self.out_dir / "tensorboard" / self.notebook

    @property
    def training(self) -> Path:
        """``train.fit``'s out_dir: ``<out_dir>/training/<notebook>/``."""
        return self.out_dir / "training" / self.notebook

    def save_figure(self, figure, name: str):
        """Saves a matplotlib figure as :meth:`figure` ``(name)`` and returns it (so a notebook cell shows it)."""
        figure.savefig(self.figure(name), dpi=110, bbox_inches="tight")
        return figure

    def figure(self, name: str) -> Path:
        """A figure's file, its folder created: ``<out_dir>/figures/<notebook>/<name>.png``."""
        folder = self.out_dir / "figures" / self.notebook
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.png"


def jsonable(value):
    """``value`` made strict-JSON safe: NumPy scalars and arrays, tuples, paths, dataclasses, and NaN or infinity
    as None. The one JSON cleaner of skinlib."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value


def environment() -> dict[str, Any]:
    """Where a result was computed: Keras backend, device in words, library versions."""
    import keras

    try:
        devices = [str(d) for d in keras.distribution.list_devices()]
    except Exception:  # not every backend lists devices
        devices = []
    accelerators = [d for d in devices if not d.lower().startswith("cpu")]
    cpu = f"{platform.machine() or 'cpu'} CPU, {os.cpu_count()} cores"
    backend = keras.backend.backend()
    versions = {"skinlib": __version__, "python": platform.python_version(), "keras": keras.__version__}
    library = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    try:
        versions[library] = __import__(library).__version__
    except (ImportError, TypeError):
        pass
    return {"backend": backend, "device": f"{', '.join(accelerators)} (host: {cpu})" if accelerators else cpu,
            "versions": versions}


def now() -> str:
    """The local time, ISO 8601 with the UTC offset, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def record(run, *, reports: Mapping[str, Any], model=None, history=None, **extra) -> dict[str, Any]:
    """The results record of one notebook's run: its settings (a ``settings.Settings``), its reports by part
    (``Report`` objects or their dicts; None, a part not evaluated, is left out), the model's depth and parameter
    counts, the study's reported numbers, the history, the environment. ``extra`` adds named entries (e.g.
    ``data``, ``leak``, ``lesion_focus``)."""
    row = run.step
    content = {
        "notebook": row.notebook, "step": row.number, "title": row.title, "model": row.model,
        "parameters": run.to_dict(),
        "metrics": {part: report.to_dict() if hasattr(report, "to_dict") else report
                    for part, report in reports.items() if report is not None},
        "study": {"validation_accuracy": row.validation_accuracy, "test_accuracy": row.test_accuracy,
                  "depth": row.depth, "params": row.params},
    }
    if model is not None:
        from skinlib import models

        content.update(depth=models.depth(model), parameter_counts=models.param_counts(model))
    if history is not None:
        content["history"] = history.to_dict(orient="records")
    if row.model:
        content["recipe_settings"] = jsonable(run.recipe)
    content.update(extra)
    content.update(environment=environment(), started=run.started, finished=now())
    return content


def write_record(run: RunFolder, content: Mapping[str, Any]) -> Path:
    """Writes a record as strict JSON to ``run.record`` (atomically: a reader never sees half a file)."""
    return _write_atomic(run.record, json.dumps(jsonable(content), indent=2, allow_nan=False) + "\n")


def _write_atomic(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` through ``<path>.partial`` and a rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def read_record(out_dir: str | Path, step: str) -> dict[str, Any]:
    """The record a notebook wrote, with a clear error when it has not run."""
    run = RunFolder(out_dir, step)
    if not run.record.is_file():
        number = study.get(step).number
        raise FileNotFoundError(f"no results of {run.notebook} at '{run.record}': run notebooks/{run.notebook}.ipynb "
                                f"(or `python run_all.py --only {number}`) with out_dir={str(out_dir)!r}")
    return json.loads(run.record.read_text(encoding="utf-8"))


LEAK_FREE = "leak-free part"
"""The row of a record's "leak" table (``leakage.gap``) that scores the test images whose lesion is not in training."""


def headline(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The flat numbers of a record that run_all.py's tables show: metrics (fractions) and their 95 % intervals
    by part (``test_accuracy``, ``test_accuracy_low``, ...), the model's size, the split's counts, the leak-free
    accuracy, the settings that name the run, and where it ran. An empty dict for no record."""
    if not record:
        return {}
    flat: dict[str, Any] = {}
    for part, report in (record.get("metrics") or {}).items():
        for name, value in ((report or {}).get("metrics") or {}).items():
            flat[f"{part}_{name}"] = value
        for name, (low, high) in ((report or {}).get("intervals") or {}).items():
            flat[f"{part}_{name}_low"], flat[f"{part}_{name}_high"] = low, high
    parameters = record.get("parameters") or {}
    environment = record.get("environment") or {}
    data = record.get("data") or {}
    flat.update(depth=record.get("depth"), params=(record.get("parameter_counts") or {}).get("total"),
                protocol=parameters.get("protocol"), recipe=parameters.get("recipe"), seed=parameters.get("seed"),
                device=environment.get("device"), backend=environment.get("backend"),
                n_train=(data.get("train") or {}).get("total"), n_test=(data.get("test") or {}).get("total"),
                test_sharing_lesion_with_train=(data.get("test") or {}).get("shares lesion with train"),
                test_accuracy_leak_free=((record.get("leak") or {}).get(LEAK_FREE) or {}).get("accuracy"))
    return flat


def read_records(out_dir: str | Path, steps=None) -> dict[str, dict[str, Any]]:
    """``{notebook: record}`` of the records under ``out_dir`` (of ``steps``, default every notebook)."""
    found = {}
    for step in steps or study.STEPS:
        run = RunFolder(out_dir, step.number)
        if run.record.is_file():
            found[run.notebook] = json.loads(run.record.read_text(encoding="utf-8"))
    return found


PREDICTION_IDS = ("image_id", "lesion_id", "label")
"""The columns of a predictions file before the classes' probabilities (one column per ``skinlib.CLASSES``)."""
PREDICTION_PARTS = ("test", "isic2018")
"""The parts a run keeps predictions of: its test set, and the ISIC 2018 external test where it was given."""


def write_predictions(run: RunFolder, frame, proba, external=None) -> Path:
    """Writes one row per image of ``frame`` (a split part: ``image_id``, ``lesion_id``, ``label``) with its
    probability for each class to ``run.predictions``, atomically. Pooling the folds of a cross-validation reads
    these (every image predicted once, by the fold model that did not train on it). ``external``: the ISIC 2018
    test's ``(frame, proba)`` (``evaluate.isic2018_predictions``), written beside them for the folds' ensemble;
    None: no external test."""
    if external is not None:
        _write_atomic(run.predictions_of("isic2018"), _predictions_csv(*external))
    return _write_atomic(run.predictions, _predictions_csv(frame, proba))


def _predictions_csv(frame, proba) -> str:
    import pandas as pd

    from skinlib.classes import CLASSES

    proba = np.asarray(proba, dtype=float)
    if proba.shape != (len(frame), len(CLASSES)):
        raise ValueError(f"write_predictions: probabilities of shape {proba.shape} for {len(frame)} images; "
                         f"give one row per image and one column per class ({len(CLASSES)})")
    table = pd.DataFrame({name: frame[name].to_numpy() for name in PREDICTION_IDS})
    table[list(CLASSES)] = proba
    return table.to_csv(index=False, float_format="%.6g")


def read_predictions(out_dir: str | Path, step: str, part: str = "test"):
    """A run's predictions table of ``part`` (:func:`write_predictions`); a clear error when the notebook wrote
    none."""
    import pandas as pd

    run = RunFolder(out_dir, step)
    path = run.predictions_of(part)
    if not path.is_file():
        hint = " with isic2018_dir set" if part == "isic2018" else ""
        raise FileNotFoundError(f"no {part} predictions of {run.notebook} at '{path}': run "
                                f"notebooks/{run.notebook}.ipynb with out_dir={str(out_dir)!r}{hint}")
    return pd.read_csv(path, dtype={name: str for name in PREDICTION_IDS[:2]})
