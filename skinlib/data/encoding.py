"""Patient metadata as model inputs: the one place where age, sex and body site become numbers.

::

    >>> fields = encoding.check_fields(["age", "sex", "localization"])
    >>> encoding.encode(parts.test, fields)               # float32 (N, 20)
    >>> encoding.columns(fields)[:4]
    ['age', 'age_missing', 'sex=female', 'sex=male']
    >>> encoding.encode_values(fields, age=55, sex="male", localization="back")   # one patient, (20,)
    >>> encoding.missing(fields)                          # the code of "nothing known", (1, 20)
    >>> vectors = data.metadata_vectors(parts, fields)   # {part: (N, 20)}; fields None: (N, 0), image only

The encoding (as published fusion systems, e.g. Gessert et al.'s ISIC 2019 entry, use it):

* ``age``: years / 100, with an explicit missing indicator ``age_missing`` (57 HAM10000 images have no age):
  a missing age is ``(0, 1)``, never a made-up value.
* ``sex``: one-hot over :data:`SEXES`; missing or empty is ``"unknown"``.
* ``localization``: one-hot over HAM10000's body sites (:data:`SITES`); missing or empty is ``"unknown"``.

``dx_type`` (how the diagnosis was confirmed: histopathology, follow-up, consensus, confocal) is never an
input: it depends on the diagnosis itself (nevi are confirmed by follow-up, melanomas by histopathology), so a
model fed it would read the answer off the label's paperwork. :func:`check_fields` refuses it.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from skinlib.errors import SkinlibError

FIELDS = ("age", "sex", "localization")
"""The metadata fields a model may take, in the order of the vector."""
UNKNOWN = "unknown"
SEXES = ("female", "male", UNKNOWN)
SITES = ("abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand", "lower extremity", "neck",
         "scalp", "trunk", "upper extremity", UNKNOWN)
"""HAM10000's ``localization`` values."""
CATEGORIES = {"sex": SEXES, "localization": SITES}
AGE_SCALE = 100.0
MAX_AGE = 120.0
LEAKING = {"dx_type": "how the diagnosis was confirmed (histo, follow_up, consensus, confocal) depends on the "
                      "diagnosis itself, so it leaks the label: it is never a model input"}
EXAMPLE = '["age", "sex", "localization"]'


class MetadataError(SkinlibError, ValueError):
    """Metadata fields or values that cannot be encoded; the message names them and what is accepted."""


def check_fields(fields) -> tuple[str, ...]:
    """``fields`` as a tuple in :data:`FIELDS` order; refuses ``dx_type`` (it leaks the diagnosis), unknown names
    (with the accepted list), repeats and an empty list (give None for an image-only model)."""
    if isinstance(fields, (str, bytes)) or not isinstance(fields, Iterable):
        raise MetadataError(f"metadata fields {fields!r}: give a list of field names, e.g. {EXAMPLE}")
    names = [str(name) for name in fields]
    for name in names:
        if name in LEAKING:
            raise MetadataError(f"metadata field {name!r} refused: {LEAKING[name]}; accepted fields: "
                                f"{', '.join(FIELDS)}")
        if name not in FIELDS:
            raise MetadataError(f"unknown metadata field {name!r}; accepted fields: {', '.join(FIELDS)}")
    if not names:
        raise MetadataError(f"no metadata fields given: give None for an image-only model, or fields, e.g. {EXAMPLE}")
    if len(set(names)) != len(names):
        raise MetadataError(f"metadata fields {names}: each field once, e.g. {EXAMPLE}")
    return tuple(name for name in FIELDS if name in names)


def columns(fields: Sequence[str]) -> list[str]:
    """The name of each entry of the vector, in order."""
    found = []
    for name in check_fields(fields):
        found += ["age", "age_missing"] if name == "age" else [f"{name}={value}" for value in CATEGORIES[name]]
    return found


def width(fields: Sequence[str] | None) -> int:
    """The length of the vector (0 for None: image only)."""
    return 0 if fields is None else len(columns(fields))


def _category(values: pd.Series, name: str) -> np.ndarray:
    text = values.astype("string").str.strip().str.lower().fillna(UNKNOWN).replace("", UNKNOWN)
    accepted = CATEGORIES[name]
    bad = sorted(set(text) - set(accepted))
    if bad:
        raise MetadataError(f"metadata {name} value(s) {bad} not known; accepted values: {', '.join(accepted)} "
                            "(missing and empty values are encoded as 'unknown')")
    return (text.to_numpy()[:, None] == np.asarray(accepted)[None, :]).astype(np.float32)


def _age(values: pd.Series) -> np.ndarray:
    age = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    unreadable = values.notna().to_numpy() & np.isnan(age)
    if unreadable.any() or (age[~np.isnan(age)] < 0).any() or (age[~np.isnan(age)] > MAX_AGE).any():
        raise MetadataError(f"metadata age must be years between 0 and {MAX_AGE:g} or missing (NaN, None), got "
                            f"{list(pd.Series(values)[unreadable | (age < 0) | (age > MAX_AGE)].unique()[:5])}")
    missing = np.isnan(age)
    return np.stack([np.where(missing, 0.0, age / AGE_SCALE), missing.astype(np.float64)], axis=1).astype(np.float32)


def encode(frame: pd.DataFrame, fields: Sequence[str] | None) -> np.ndarray:
    """float32 (N, :func:`width`) vectors of ``frame``'s rows; None: (N, 0), image only. A column that is absent
    is refused (give a frame of HAM10000's metadata, e.g. ``split.test``)."""
    if fields is None:
        return np.zeros((len(frame), 0), dtype=np.float32)
    fields = check_fields(fields)
    absent = [name for name in fields if name not in frame.columns]
    if absent:
        raise MetadataError(f"the frame has no column(s) {absent} for the metadata fields {list(fields)}; give "
                            "HAM10000's metadata rows (data.load_metadata, or a split's part)")
    blocks = [_age(frame["age"]) if name == "age" else _category(frame[name], name) for name in fields]
    return np.concatenate(blocks, axis=1)


def encode_values(fields: Sequence[str], **values) -> np.ndarray:
    """The (width,) vector of one patient: ``age=55, sex="male", localization="back"``; a field left out (or None)
    gets its missing code. A name that is not one of ``fields`` is refused."""
    fields = check_fields(fields)
    extra = sorted(set(values) - set(fields))
    if extra:
        raise MetadataError(f"metadata {extra} given, but the model takes only {', '.join(fields)}")
    age = values.get("age")
    if age is not None and (isinstance(age, bool) or not isinstance(age, numbers.Real) or math.isnan(age)):
        raise MetadataError(f"metadata age={age!r}: give years as a number between 0 and {MAX_AGE:g}")
    row = {name: [values.get(name)] for name in fields}
    if "age" in row:
        row["age"] = [np.nan if age is None else float(age)]
    return encode(pd.DataFrame(row), fields)[0]


def missing(fields: Sequence[str], n: int = 1) -> np.ndarray:
    """(n, width) vectors of the missing-value code: age unknown, sex and site "unknown" (the fallback when no
    metadata is given at predict time)."""
    return np.repeat(encode_values(fields)[None], n, axis=0)


def metadata_vectors(parts, fields: Sequence[str] | None, names=("train", "val", "test")) -> dict[str, np.ndarray]:
    """``{part: float32 (N, width)}`` for a ``Split`` (or a dict of frames), in the rows' order, as
    ``data.load_parts`` gives the images. None fields: (N, 0) arrays, image only."""
    frames: Mapping = parts.parts() if hasattr(parts, "parts") else dict(parts)
    absent = [name for name in names if name not in frames]
    if absent:
        raise MetadataError(f"no part(s) {absent} in the split; it has {sorted(frames)}")
    return {name: encode(frames[name], fields) for name in names}
