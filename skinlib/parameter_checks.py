"""How each notebook parameter of ``settings.Settings`` is checked and resolved: ``check(value, step)`` returns
the resolved value (None becomes the study's row's value where the study has one) or raises ValueError with the
accepted form, which ``settings.resolve`` turns into a ``SettingsError`` naming the parameter."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Mapping

from skinlib import recipes, study

MIN_SUBSET = 100
"""The smallest ``subset``: with 10 % test and validation parts, smaller ones leave classes out of a part."""


def _integer(value, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"give {what} (an int >= {minimum})")
    return int(value)


def seed(value, step):
    return _integer(value, 0, "a whole number")


def protocol(value, step):
    from skinlib.data.splits import PROTOCOLS

    if value not in PROTOCOLS:
        raise ValueError(f"accepted values: {', '.join(PROTOCOLS)}")
    return value


def folds(value, step):
    return None if value is None else _integer(value, 2, "None (one split) or the number of folds")


def fold(value, step):
    return None if value is None else _integer(value, 0, "None (one split) or the test fold")


def source(value, step):
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError("give None or an image source of the Dataverse metadata's `dataset` column, e.g. "
                         "'rosendahl' or 'vidir_molemax'")
    return value


def split_problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The parameter and the reason when ``source``, ``folds`` and ``fold`` do not fit together or with the
    protocol."""
    if (values["protocol"] == "source_out") != (values.get("source") is not None):
        if values.get("source") is None:
            return "source", "protocol='source_out' tests on one image source: give it, e.g. source='rosendahl'"
        return "source", f"holding out an image source needs protocol='source_out', not {values['protocol']!r}"
    folds, fold = values["folds"], values["fold"]
    if folds is None:
        return None if fold is None else ("fold", "needs folds (the number of folds, e.g. folds=5)")
    if values["protocol"] != "grouped":
        return "folds", f"lesion-grouped cross-validation needs protocol='grouped', not {values['protocol']!r}"
    if fold is None or fold >= folds:
        return "fold", f"give the test fold, an int from 0 to {folds - 1}"
    return None


def val_size(value, step):
    if value is None:
        return step.val_size
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError("give None (the study's) or a share between 0 and 1, e.g. 0.1")
    return float(value)


def subset(value, step):
    return None if value is None else _integer(value, MIN_SUBSET, "None (every image) or a subset size")


def image_size(value, step):
    if value is None:
        return step.image_size
    from skinlib import backbones

    minimum = backbones.get(step.model).min_size if step.model else 1
    study_size = "" if step.image_size is None else f", {list(step.image_size)}"
    form = f"give None (the study's{study_size}) or [height, width]"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(form)
    try:
        size = tuple(_integer(v, minimum, "two whole numbers") for v in value)
    except ValueError:
        raise ValueError(f"{form}, each a whole number >= {minimum} for {step.model or 'this notebook'}") from None
    return size


def epochs(value, step):
    return None if value is None else _integer(value, 1, "None (the study's epochs per stage) or epochs per stage")


def batch_size(value, step):
    if value is None:
        return step.batch_size
    return _integer(value, 1, f"None (the study's, {step.batch_size}) or a batch size")


def weights(value, step):
    if value is not None and value != "imagenet" and not isinstance(value, (str, Path)):
        raise ValueError("give 'imagenet', None (random) or the path of a weights file")
    return value


def tta(value, step):
    from skinlib.evaluate import TTA_MODES

    if value not in (None, True, False, *TTA_MODES):
        raise ValueError(f"accepted values: None, True, {', '.join(map(repr, TTA_MODES))}")
    return value


def metadata(value, step):
    if value is None:
        return None
    from skinlib.data import encoding

    try:
        return encoding.check_fields(value)
    except encoding.MetadataError as error:
        raise ValueError(f"{error} (None: image only)") from None


def flag(value, step):
    if not isinstance(value, bool):
        raise ValueError("give True or False")
    return value


def tensorboard(value, step):
    from skinlib import tensorboard_logs

    if value is None:
        return tensorboard_logs.available()
    flag(value, step)
    if value and not tensorboard_logs.available():
        raise ValueError("TensorBoard logs need TensorFlow's summary writer: pip install tensorflow tensorboard, "
                         "or give False")
    return value


def folder(value, step):
    if value is not None and not isinstance(value, (str, Path)):
        raise ValueError("give a folder path")
    return None if value is None else Path(value)


def members(value, step):
    if not step.members:
        return tuple(value or ())
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"give a list of notebook numbers, e.g. {list(step.members)}")
    try:
        found = tuple(study.get(str(v)).number for v in value)
    except KeyError as error:
        raise ValueError(str(error.args[0])) from None
    if len(found) < 2 or any(study.get(n).model is None for n in found):
        raise ValueError(f"give two or more training notebooks, e.g. {list(step.members)}")
    return found


def recipe(value, step):
    try:
        return recipes.get(value)
    except recipes.RecipeError as error:
        raise ValueError(str(error)) from None
