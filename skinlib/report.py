"""The record of one evaluation: :class:`Report`, built by ``skinlib.evaluate.report``.

Its metrics as attributes, their bootstrap intervals, the per-class table and the confusion matrix, shown as a
table in Jupyter, summarised in one line, and written to and read from JSON (``to_dict``, ``from_dict``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skinlib.outputs import jsonable


@dataclass
class Report:
    """The evaluation of one set of predictions. Build it with :func:`report`.

    Scalar metrics are attributes (``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``roc_auc_macro``,
    ``log_loss``, ``ece``, ``melanoma_sensitivity``, ``melanoma_specificity``); ``intervals`` maps
    ``"accuracy"``, ``"balanced_accuracy"``, ``"macro_f1"`` and ``"roc_auc_macro"`` to (low, high);
    ``per_class`` is a DataFrame (precision, recall, f1, support, roc_auc by class); ``confusion`` is the
    raw confusion matrix (rows: truth). The intervals resampled ``n_groups`` units of ``interval_unit``
    (``"lesion"``: whole lesions; ``"image"``: images, ``n_groups == n``). ``auc_classes`` names the classes
    that ``roc_auc_macro`` averages (those with a defined AUC: present, and not the only class present).
    """

    n: int
    classes: tuple[str, ...]
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    roc_auc_macro: float
    log_loss: float
    ece: float
    melanoma_sensitivity: float
    melanoma_specificity: float
    intervals: dict[str, tuple[float, float]]
    per_class: pd.DataFrame
    confusion: np.ndarray
    confidence_level: float = 0.95
    notes: list[str] = field(default_factory=list)
    n_groups: int | None = None  # None: n (one unit per image)
    interval_unit: str = "image"
    auc_classes: tuple[str, ...] | None = None  # None: the classes whose per-class roc_auc is defined

    SCALARS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "log_loss", "ece",
               "melanoma_sensitivity", "melanoma_specificity")

    def __post_init__(self) -> None:
        if self.n_groups is None:
            self.n_groups = self.n
        if self.auc_classes is None:
            self.auc_classes = tuple(self.per_class.index[self.per_class["roc_auc"].notna()])
        self.auc_classes = tuple(self.auc_classes)

    def auc_basis(self) -> str:
        """Which classes the macro AUC averages: "7 classes", or "5 of 7 classes: akiec, bcc, bkl, mel, nv"."""
        if len(self.auc_classes) == len(self.classes):
            return f"{len(self.classes)} classes"
        return f"{len(self.auc_classes)} of {len(self.classes)} classes: {', '.join(self.auc_classes)}"

    def interval_basis(self) -> str:
        """What the intervals resampled, e.g. "95 % intervals over 748 lesions (1,002 images)"."""
        level = f"{100 * self.confidence_level:g} % intervals over"
        if self.interval_unit == "image":
            return f"{level} {self.n:,} images"
        return f"{level} {self.n_groups:,} {self.interval_unit}s ({self.n:,} images)"

    def metrics(self) -> dict[str, float]:
        """The scalar metrics by name."""
        return {name: getattr(self, name) for name in self.SCALARS}

    def to_frame(self) -> pd.DataFrame:
        """Scalar metrics as a table: value, ci_low, ci_high (NaN where no interval is computed)."""
        rows = {name: (value, *self.intervals.get(name, (math.nan, math.nan)))
                for name, value in self.metrics().items()}
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=["value", "ci_low", "ci_high"])
        frame.index.name = "metric"
        return frame

    def confusion_frame(self, normalize: bool = False) -> pd.DataFrame:
        """The confusion matrix with class names (rows: true class, columns: predicted); ``normalize``
        divides each row by its count (rows of absent classes become NaN)."""
        matrix = self.confusion.astype(float)
        if normalize:
            with np.errstate(invalid="ignore", divide="ignore"):
                matrix = matrix / matrix.sum(axis=1, keepdims=True)
        return pd.DataFrame(matrix if normalize else self.confusion,
                            index=pd.Index(self.classes, name="true"),
                            columns=pd.Index(self.classes, name="predicted"))

    def summary(self) -> str:
        """One line of text with the headline numbers."""
        def ci(name: str) -> str:
            low, high = self.intervals.get(name, (math.nan, math.nan))
            return f" [{low:.3f}, {high:.3f}]" if not math.isnan(low) else ""

        return (f"n={self.n}  accuracy {self.accuracy:.3f}{ci('accuracy')}  "
                f"balanced accuracy {self.balanced_accuracy:.3f}{ci('balanced_accuracy')}  "
                f"macro F1 {self.macro_f1:.3f}{ci('macro_f1')}  "
                f"macro AUC {self.roc_auc_macro:.3f}{ci('roc_auc_macro')} (over {self.auc_basis()})  "
                f"melanoma sensitivity {self.melanoma_sensitivity:.3f} "
                f"specificity {self.melanoma_specificity:.3f}  "
                f"log loss {self.log_loss:.3f}  ECE {self.ece:.3f}  ({self.interval_basis()})")

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        parts = [f"<p><b>Evaluation of {self.n:,} images</b> ({self.interval_basis()}, "
                 f"percentile bootstrap)</p>",
                 self.to_frame().to_html(float_format=lambda v: f"{v:.3f}", na_rep="–"),
                 self.per_class.to_html(float_format=lambda v: f"{v:.3f}", na_rep="–"),
                 "<p>Confusion matrix (rows: true class, columns: predicted)</p>",
                 self.confusion_frame().to_html()]
        parts += [f"<p><i>Note: {note}</i></p>" for note in self.notes]
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN becomes None)."""
        return jsonable({
            "n": self.n,
            "n_groups": self.n_groups,
            "interval_unit": self.interval_unit,
            "classes": list(self.classes),
            "auc_classes": list(self.auc_classes),
            "metrics": self.metrics(),
            "intervals": {name: list(bounds) for name, bounds in self.intervals.items()},
            "confidence_level": self.confidence_level,
            "per_class": {name: row for name, row in self.per_class.to_dict(orient="index").items()},
            "confusion": self.confusion.tolist(),
            "notes": list(self.notes),
        })

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """The report as strict JSON (no NaN); also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        """Rebuild a report from :meth:`to_dict` output (None back to NaN; reports written before
        ``n_groups`` existed resampled images)."""
        def number(value) -> float:
            return math.nan if value is None else float(value)

        per_class = pd.DataFrame.from_dict(data["per_class"], orient="index").astype(float)
        per_class["support"] = per_class["support"].astype(int)
        per_class.index.name = "class"
        return cls(n=int(data["n"]), classes=tuple(data["classes"]),
                   **{name: number(data["metrics"][name]) for name in cls.SCALARS},
                   intervals={name: tuple(number(v) for v in bounds)
                              for name, bounds in data["intervals"].items()},
                   per_class=per_class, confusion=np.asarray(data["confusion"], dtype=np.int64),
                   confidence_level=float(data["confidence_level"]), notes=list(data["notes"]),
                   n_groups=data.get("n_groups"), interval_unit=data.get("interval_unit", "image"),
                   auc_classes=data.get("auc_classes"))

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "Report":
        """Read a report written by :meth:`to_json` (a path, or the JSON text itself)."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))
