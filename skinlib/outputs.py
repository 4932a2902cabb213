"""A run's folder and its results records: written and read here only (notebooks, run_all.py, notebook 09).

::

    run = outputs.RunFolder("../outputs/manual", "04")
    run.model           # <out>/models/04_finetune_inception_v3.keras
    run.figure("roc")   # <out>/figures/04_finetune_inception_v3/roc.png
    run.training        # <out>/training/04_finetune_inception_v3/   (train.fit's out_dir)
    outputs.write_record(run, outputs.record("04", parameters={...}, reports={...}, model=model))
    outputs.read_record("../outputs/manual", "07")["metrics"]["test"]["metrics"]["accuracy"]

A record is strict JSON (NaN and infinities become null): the notebook's parameters, its reports (``to_dict`` of
``skinlib.evaluate.Report``), the model's depth and parameter counts, the study's reported numbers, the merged
training history, and where and how long it ran.
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


def record(step: str, *, parameters: Mapping[str, Any], reports: Mapping[str, Any], model=None, history=None,
           started: str | None = None, **extra) -> dict[str, Any]:
    """The results record of one notebook: its parameters, its reports by part (``Report`` objects or their
    dicts), the model's depth and parameter counts, the study's reported numbers, the history, the environment.
    ``extra`` adds named entries (e.g. ``data``, ``lesion_focus``, ``members``)."""
    row = study.get(step)
    content = {
        "notebook": row.notebook, "step": row.number, "title": row.title, "model": row.model,
        "parameters": dict(parameters),
        "metrics": {part: report.to_dict() if hasattr(report, "to_dict") else report for part, report in reports.items()},
        "study": {"validation_accuracy": row.validation_accuracy, "test_accuracy": row.test_accuracy,
                  "depth": row.depth, "params": row.params},
    }
    if model is not None:
        from skinlib import models

        content.update(depth=models.depth(model), parameter_counts=models.param_counts(model))
    if history is not None:
        content["history"] = history.to_dict(orient="records")
    content.update(extra)
    content.update(environment=environment(), started=started, finished=now())
    return content


def write_record(run: RunFolder, content: Mapping[str, Any]) -> Path:
    """Writes a record as strict JSON to ``run.record`` (atomically: a reader never sees half a file)."""
    path = run.record
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(jsonable(content), indent=2, allow_nan=False) + "\n", encoding="utf-8")
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


SPLIT_KEYS = ("protocol", "seed", "val_size", "subset", "merged_duplicates")
"""The parameters that must agree for models to have been evaluated on the same images."""


def shared_split(records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The split settings (:data:`SPLIT_KEYS`) that every record's model was trained on; an error
    naming the two notebooks and the setting when they differ."""
    if not records:
        raise ValueError("no records given: name at least two notebooks")
    (first_key, first), *others = records.items()
    for key, other in others:
        for name in SPLIT_KEYS:
            if first["parameters"].get(name) != other["parameters"].get(name):
                raise ValueError(f"{first['notebook']} and {other['notebook']} were trained on different splits: "
                                 f"{name}={first['parameters'].get(name)!r} vs {other['parameters'].get(name)!r}; "
                                 f"run them again with the same {', '.join(SPLIT_KEYS)}")
    return {name: first["parameters"].get(name) for name in SPLIT_KEYS}
