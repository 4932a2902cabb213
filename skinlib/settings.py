"""One run's settings, resolved once: a notebook's parameters, the study's row and the recipe.

::

    run = settings.resolve("03", globals())   # in a notebook, after its parameters cell
    run                                        # every setting and where it came from (a table in Jupyter)
    run.image_size, run.batch_size             # None has become the study's: 192x256, batch 64
    head, top = run.stages                     # the study's fits as the recipe runs them (``recipe.apply``)
    train.fit(model, arrays, run.recipe, head, augmentation=augmentation, **run.fit_options)
    outputs.record(run, reports=reports)       # the record's "parameters" are ``run.to_dict()``
    settings.read(out_dir, "07")               # read back from its record (notebook 09)

A notebook parameter is one field of :class:`Settings` made with :func:`parameter`: add the line to the
notebooks' parameters cells and the field here, and :func:`resolve` picks it up by name, checks it and writes it
into every record. Each value is checked as it is resolved, so a bad one (``batch_size=0``, ``image_size="abc"``)
fails before any work with the parameter's name and the accepted form; ``run_all.py`` checks its ``-p`` values
the same way before it starts a kernel.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from skinlib import recipes, study
from skinlib.errors import SkinlibError
from skinlib.recipes import Recipe

MIN_SUBSET = 100
"""The smallest ``subset``: with 10 % test and validation parts, smaller ones leave classes out of a part."""


class SettingsError(SkinlibError, ValueError):
    """A notebook parameter with a value that cannot be used; the message names it and the accepted form."""


def parameter(default: Any, help: str, check: Callable | None = None) -> Any:
    """A :class:`Settings` field that is a notebook parameter: its default, what it means, and
    ``check(value, step)``, which returns the resolved value or raises ValueError with the accepted form."""
    return field(default=default, metadata={"parameter": True, "help": help, "check": check})


def _integer(value, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"give {what} (an int >= {minimum})")
    return int(value)


def _seed(value, step):
    return _integer(value, 0, "a whole number")


def _protocol(value, step):
    from skinlib.data.splits import PROTOCOLS

    if value not in PROTOCOLS:
        raise ValueError(f"accepted values: {', '.join(PROTOCOLS)}")
    return value


def _folds(value, step):
    return None if value is None else _integer(value, 2, "None (one split) or the number of folds")


def _fold(value, step):
    return None if value is None else _integer(value, 0, "None (one split) or the test fold")


def _fold_problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The parameter and the reason when ``folds`` and ``fold`` do not fit together or with the protocol."""
    folds, fold = values["folds"], values["fold"]
    if folds is None:
        return None if fold is None else ("fold", "needs folds (the number of folds, e.g. folds=5)")
    if values["protocol"] != "grouped":
        return "folds", f"lesion-grouped cross-validation needs protocol='grouped', not {values['protocol']!r}"
    if fold is None or fold >= folds:
        return "fold", f"give the test fold, an int from 0 to {folds - 1}"
    return None


def _val_size(value, step):
    if value is None:
        return step.val_size
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError("give None (the study's) or a share between 0 and 1, e.g. 0.1")
    return float(value)


def _subset(value, step):
    return None if value is None else _integer(value, MIN_SUBSET, "None (every image) or a subset size")


def _image_size(value, step):
    if value is None:
        return step.image_size
    from skinlib import backbones

    minimum = backbones.get(step.model).min_size if step.model else 1
    form = f"give None (the study's{'' if step.image_size is None else f', {list(step.image_size)}'}) or [height, width]"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(form)
    try:
        size = tuple(_integer(v, minimum, "two whole numbers") for v in value)
    except ValueError:
        raise ValueError(f"{form}, each a whole number >= {minimum} for {step.model or 'this notebook'}") from None
    return size


def _epochs(value, step):
    return None if value is None else _integer(value, 1, "None (the study's epochs per stage) or epochs per stage")


def _batch_size(value, step):
    if value is None:
        return step.batch_size
    return _integer(value, 1, f"None (the study's, {step.batch_size}) or a batch size")


def _weights(value, step):
    if value is not None and value != "imagenet" and not isinstance(value, (str, Path)):
        raise ValueError("give 'imagenet', None (random) or the path of a weights file")
    return value


def _tta(value, step):
    from skinlib.evaluate import TTA_MODES

    if value not in (None, True, False, *TTA_MODES):
        raise ValueError(f"accepted values: None, True, {', '.join(map(repr, TTA_MODES))}")
    return value


def _metadata(value, step):
    if value is None:
        return None
    from skinlib.data import encoding

    try:
        return encoding.check_fields(value)
    except encoding.MetadataError as error:
        raise ValueError(f"{error} (None: image only)") from None


def _flag(value, step):
    if not isinstance(value, bool):
        raise ValueError("give True or False")
    return value


def _folder(value, step):
    if value is not None and not isinstance(value, (str, Path)):
        raise ValueError("give a folder path")
    return None if value is None else Path(value)


def _members(value, step):
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


def _recipe(value, step):
    try:
        return recipes.get(value)
    except recipes.RecipeError as error:
        raise ValueError(str(error)) from None


@dataclass(frozen=True)
class Settings:
    """Every resolved setting of one notebook's run. Make it with :func:`resolve`; it never changes after."""

    step: study.Step
    data_dir: Path | None = parameter(None, "HAM10000 folder; None: $SKINLIB_DATA, else ../data/ham10000", _folder)
    images: str | None = parameter(None, "image folder inside data_dir; None: the official folders, else images*")
    isic2018_dir: Path | None = parameter(None, "ISIC 2018 Task 3 test folder; None: no external test", _folder)
    protocol: str = parameter("study", "the split: 'study', 'grouped' or 'study_deleaked'", _protocol)
    seed: int = parameter(0, "random seed of the split, the subset, the augmentation and the training", _seed)
    folds: int | None = parameter(None, "None: one split; K: lesion-grouped K-fold cross-validation", _folds)
    fold: int | None = parameter(None, "the test fold (0 .. folds-1) of the cross-validation", _fold)
    recipe: Recipe = parameter("study", "'study' or 'corrected' (skinlib.recipes)", _recipe)
    val_size: float | None = parameter(None, "validation share; None: the study's", _val_size)
    subset: int | None = parameter(None, "None: every image; an int: a class-stratified subset", _subset)
    image_size: tuple[int, int] | None = parameter(None, "[height, width]; None: the study's", _image_size)
    epochs: int | None = parameter(None, "None: the study's epochs per stage; an int: that many in every stage",
                                   _epochs)
    batch_size: int | None = parameter(None, "None: the study's", _batch_size)
    weights: str | None = parameter("imagenet", "'imagenet', None (random) or a weights file", _weights)
    tta: Any = parameter(None, "test-time augmentation: None, True, 'flips' or 'd4'", _tta)
    metadata: tuple[str, ...] | None = parameter(None, "fused with the image: None (image only) or fields, e.g. "
                                                 "['age', 'sex', 'localization']", _metadata)
    out_dir: Path | None = parameter("../outputs/manual", "models, records, figures and training files", _folder)
    resume: bool = parameter(False, "continue an interrupted run from out_dir's training checkpoints", _flag)
    eager: bool = parameter(False, "run Keras eagerly (fast start for tiny smoke runs)", _flag)
    members: tuple[str, ...] = parameter((), "the ensemble's notebooks (09)", _members)
    merged_duplicates: bool | None = None  # resolved: near-duplicate lesions merged (every protocol but the study's)
    started: str | None = None  # resolved: when the run started
    given: frozenset = field(default=frozenset(), compare=False, repr=False)  # the parameters the notebook passed

    # -- what the settings imply -----------------------------------------------------------------------------
    @property
    def number(self) -> str:
        return self.step.number

    @property
    def notebook(self) -> str:
        return self.step.notebook

    @property
    def title(self) -> str:
        return self.step.title

    @property
    def backbone(self) -> str | None:
        """The ``skinlib.backbones`` key the notebook trains (the study's row)."""
        return self.step.model

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, 3)

    @property
    def preprocess(self) -> str:
        """``models.build``'s preprocessing: the study's input scaling, or the backbone's own."""
        return self.recipe.preprocess_for(self.step)

    @property
    def augmentation(self):
        """What ``augment.pipeline`` builds: the study's ``ImageDataGenerator`` record, the recipe's, or "none"."""
        return self.recipe.augment_for(self.step)

    @property
    def stages(self) -> tuple[study.Stage, ...]:
        """The study's fits with the ``epochs`` parameter applied, as the recipe runs them (``recipe.apply``)."""
        return tuple(self.recipe.apply(stage) for stage in study.stages(self.number, self.epochs))

    @property
    def folder(self):
        """The run folder (``outputs.RunFolder``): models, records, figures and training files."""
        from skinlib import outputs

        return outputs.RunFolder(self.out_dir, self.number)

    @property
    def model_options(self) -> dict[str, Any]:
        """``models.build``'s keyword arguments that these settings decide (weights, preprocessing, metadata, seed)."""
        return {"weights": self.weights, "preprocess": self.preprocess, "metadata": self.metadata, "seed": self.seed}

    @property
    def fit_options(self) -> dict[str, Any]:
        """``train.fit``'s keyword arguments that these settings decide."""
        return {"batch_size": self.batch_size, "out_dir": self.folder.training, "seed": self.seed,
                "resume": self.resume, "run_eagerly": self.eager}

    @property
    def split_options(self) -> dict[str, Any]:
        """``data.split``'s keyword arguments that these settings decide (all but ``duplicates``)."""
        return {"protocol": self.protocol, "seed": self.seed, "val_size": self.val_size, "folds": self.folds,
                "fold": self.fold}

    def schedule(self) -> pd.DataFrame:
        """The stages as they will run, one row per ``fit`` (``study.schedule``)."""
        return study.schedule(self.stages, self.batch_size)

    def replace(self, **changes) -> "Settings":
        """A copy with some settings changed, resolved again."""
        values = {name: getattr(self, name) for name in parameter_names()}
        values.update({k: v for k, v in changes.items() if k in parameter_names()})
        resolved = resolve(self.step, values)
        extra = {k: v for k, v in changes.items() if k not in parameter_names()}
        return dataclasses.replace(resolved, given=self.given | set(changes), started=self.started, **extra)

    # -- shown and written -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The record's "parameters": every resolved parameter (the recipe by name; not ``out_dir``, the record's
        own folder), and the resolved stages."""
        from skinlib.outputs import jsonable

        names = [n for n in parameter_names() if (self._applies(n) or n in SPLIT_KEYS) and n != "out_dir"]
        content = {name: getattr(self, name) for name in names}
        content["merged_duplicates"] = self.merged_duplicates
        if "recipe" in content:
            content["recipe"] = self.recipe.name
        if self.step.stages:
            content["stages"] = [dataclasses.asdict(stage) for stage in self.stages]
        return jsonable(content)

    def table(self) -> pd.DataFrame:
        """One row per setting: its value and where it came from."""
        rows = []
        for name in parameter_names():
            if not self._applies(name):
                continue
            value = getattr(self, name)
            given = name in self.given
            origin = "parameter" if given else "default"
            if name in _FROM_STUDY and (not given or self._study_value(name) == value) and value is not None:
                origin = "the study's" if value == self._study_value(name) else origin
            rows.append((name, value.name if isinstance(value, Recipe) else value, origin))
        if self.step.model:
            rows += [("backbone", self.backbone, "the study's"), ("input preprocessing", self.preprocess, "recipe"),
                     ("merged near-duplicates", self.merged_duplicates, "protocol"),
                     ("stages", "; ".join(f"{s.layers} {s.epochs} epochs, bn {s.bn}, lr {s.learning_rate:g}"
                                          for s in self.stages), "study and recipe")]
        frame = pd.DataFrame(rows, columns=["setting", "value", "from"]).set_index("setting")
        frame["value"] = frame["value"].map(lambda v: str(list(v)) if isinstance(v, tuple) else str(v))
        frame.index.name = self.notebook
        return frame

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __str__(self) -> str:
        return self.table().to_string()

    def _applies(self, name: str) -> bool:
        if self.step.members:
            return name in ("data_dir", "images", "out_dir", "members", "tta", "eager") or name in self.given
        return name != "members"

    def _study_value(self, name: str):
        return {"val_size": self.step.val_size, "image_size": self.step.image_size,
                "batch_size": self.step.batch_size}.get(name)


_FROM_STUDY = ("val_size", "image_size", "batch_size")
SPLIT_KEYS = ("protocol", "seed", "val_size", "subset", "merged_duplicates", "folds", "fold")
"""The settings that must agree for models to have been evaluated on the same images."""


def parameter_names() -> tuple[str, ...]:
    """The notebook parameters that :class:`Settings` knows, in order."""
    return tuple(f.name for f in dataclasses.fields(Settings) if f.metadata.get("parameter"))


def resolve(step: "str | study.Step", parameters: Mapping[str, Any]) -> Settings:
    """The settings of notebook ``step``: its parameters from ``parameters`` (a notebook's ``globals()``, or a dict:
    names that are not parameters are ignored), None resolved to the study's row, the recipe looked up, each value
    checked. A bad value raises :class:`SettingsError` naming the parameter and what it accepts."""
    from skinlib import outputs

    row = study.get(step.number if isinstance(step, study.Step) else step)
    names = parameter_names()
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    given = {name: parameters[name] for name in names if name in parameters}
    values = {}
    for name in names:
        value = given.get(name, fields[name].default)
        check = fields[name].metadata.get("check")
        try:
            values[name] = check(value, row) if check is not None else value
        except (ValueError, TypeError) as error:
            raise SettingsError(f"parameter {name}={value!r} of {row.notebook}: {error}") from None
    problem = _fold_problem(values)
    if problem:
        name, reason = problem
        raise SettingsError(f"parameter {name}={values[name]!r} of {row.notebook}: {reason}")
    if row.model is None and not row.members:
        values["image_size"] = given.get("image_size")  # the EDA's own thumbnails
    if row.members or row.model is None:
        values["weights"] = given.get("weights")
    if given.get("data_dir") is not None or row.model or row.members:
        from skinlib.data import locate

        values["data_dir"], values["images"] = locate(values["data_dir"], values["images"])
    if row.model and values["tta"] not in (None, False):
        from skinlib.evaluate import tta_transforms

        try:
            tta_transforms(values["tta"], values["image_size"])
        except ValueError as error:
            raise SettingsError(f"parameter tta={values['tta']!r} of {row.notebook}: {error}") from None
    return Settings(step=row, merged_duplicates=values["protocol"] != "study", started=outputs.now(),
                    given=frozenset(given), **values)


def read(out_dir: str | Path, step: str) -> Settings:
    """The settings of the run whose record notebook ``step`` wrote under ``out_dir`` (``outputs.read_record``),
    with ``out_dir`` as its folder (a record does not store its own folder)."""
    from skinlib import outputs

    return dataclasses.replace(from_record(outputs.read_record(out_dir, step)), out_dir=Path(out_dir))


def from_record(record: Mapping[str, Any]) -> Settings:
    """The settings a results record was written from (``outputs.read_record``), its recipe included."""
    saved = dict(record.get("parameters") or {})
    recipe = record.get("recipe_settings")
    if isinstance(recipe, Mapping):
        saved["recipe"] = _recipe_from_dict(recipe)
    known = {k: v for k, v in saved.items() if k in parameter_names()}
    resolved = resolve(record["step"], known)
    if "merged_duplicates" in saved:
        resolved = dataclasses.replace(resolved, merged_duplicates=saved["merged_duplicates"])
    return dataclasses.replace(resolved, started=record.get("started"))


def _recipe_from_dict(content: Mapping[str, Any]) -> Recipe:
    fields = {f.name for f in dataclasses.fields(Recipe)}
    values = {k: v for k, v in content.items() if k in fields}
    if isinstance(values.get("augment"), Mapping):
        values["augment"] = study.Augmentation(**values["augment"])
    if "standardize_on" in values:
        values["standardize_on"] = tuple(values["standardize_on"])
    if values.get("name") in recipes.RECIPES and Recipe(**values) == recipes.RECIPES[values["name"]]:
        return recipes.RECIPES[values["name"]]
    return Recipe(**values)


def shared_split(members: Mapping[str, Settings]) -> dict[str, Any]:
    """The split settings (:data:`SPLIT_KEYS`) that every member's model was trained on (notebook 09); an error
    naming the two notebooks and the setting when they differ."""
    if not members:
        raise SettingsError("no members given: name at least two notebooks")
    (first_name, first), *others = members.items()
    for name, other in others:
        for key in SPLIT_KEYS:
            if getattr(first, key) != getattr(other, key):
                raise SettingsError(
                    f"{first.notebook} and {other.notebook} were trained on different splits: {key}="
                    f"{getattr(first, key)!r} vs {getattr(other, key)!r}; run them again with the same "
                    f"{', '.join(SPLIT_KEYS)}")
    return {key: getattr(first, key) for key in SPLIT_KEYS}
