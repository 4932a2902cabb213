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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from skinlib import recipes, study
from skinlib.errors import SkinlibError
from skinlib.recipes import Recipe

from skinlib import parameter_checks as checks
from skinlib.parameter_checks import MIN_SUBSET  # noqa: F401  (settings.MIN_SUBSET)


class SettingsError(SkinlibError, ValueError):
    """A notebook parameter with a value that cannot be used; the message names it and the accepted form."""


def parameter(default: Any, help: str, check: Callable | None = None) -> Any:
    """A :class:`Settings` field that is a notebook parameter: its default, what it means, and
    ``check(value, step)``, which returns the resolved value or raises ValueError with the accepted form."""
    return field(default=default, metadata={"parameter": True, "help": help, "check": check})


@dataclass(frozen=True)
class Settings:
    """Every resolved setting of one notebook's run. Make it with :func:`resolve`; it never changes after."""

    step: study.Step
    data_dir: Path | None = parameter(None, "HAM10000 folder; None: $SKINLIB_DATA, else data/ham10000", checks.folder)
    images: str | None = parameter(None, "image folder inside data_dir; None: the official folders, else images*")
    isic2018_dir: Path | None = parameter(None, "ISIC 2018 Task 3 test folder; None: no external test", checks.folder)
    protocol: str = parameter("study", "the split: 'study', 'grouped', 'study_deleaked' or 'source_out'",
                              checks.protocol)
    source: str | None = parameter(None, "protocol 'source_out': the image source tested (the Dataverse `dataset`), "
                                   "e.g. 'rosendahl'", checks.source)
    seed: int = parameter(0, "random seed of the split, the subset, the augmentation and the training", checks.seed)
    folds: int | None = parameter(None, "None: one split; K: lesion-grouped K-fold cross-validation", checks.folds)
    fold: int | None = parameter(None, "the test fold (0 .. folds-1) of the cross-validation", checks.fold)
    recipe: Recipe = parameter("study", "'study' or 'corrected' (skinlib.recipes)", checks.recipe)
    val_size: float | None = parameter(None, "validation share; None: the study's", checks.val_size)
    subset: int | None = parameter(None, "None: every image; an int: a class-stratified subset", checks.subset)
    image_size: tuple[int, int] | None = parameter(None, "[height, width]; None: the study's", checks.image_size)
    epochs: int | None = parameter(None, "None: the study's epochs per stage; an int: that many in every stage",
                                   checks.epochs)
    batch_size: int | None = parameter(None, "None: the study's", checks.batch_size)
    weights: str | None = parameter("imagenet", "'imagenet', None (random) or a weights file", checks.weights)
    tta: Any = parameter(None, "test-time augmentation: None, True, 'flips' or 'd4'", checks.tta)
    metadata: tuple[str, ...] | None = parameter(None, "fused with the image: None (image only) or fields, e.g. "
                                                 "['age', 'sex', 'localization']", checks.metadata)
    out_dir: Path | None = parameter("../outputs/manual", "models, records, figures and training files", checks.folder)
    resume: bool = parameter(False, "continue an interrupted run from out_dir's training checkpoints", checks.flag)
    eager: bool = parameter(False, "run Keras eagerly (fast start for tiny smoke runs)", checks.flag)
    tensorboard: bool | None = parameter(None, "TensorBoard logs and HParams under out_dir/tensorboard; None: where "
                                         "TensorFlow is installed", checks.tensorboard)
    members: tuple[str, ...] = parameter((), "the ensemble's notebooks (09)", checks.members)
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
                "resume": self.resume, "run_eagerly": self.eager,
                "tensorboard": self.folder.tensorboard if self.tensorboard else None, "hparams": self.hparams}

    @property
    def hparams(self) -> dict[str, Any]:
        """The run as TensorBoard's HParams shows it: the notebook and the record's parameters (stages aside)."""
        content = {key: value for key, value in self.to_dict().items() if key != "stages"}
        return {"notebook": self.notebook, **content}

    @property
    def split_options(self) -> dict[str, Any]:
        """``data.split``'s keyword arguments that these settings decide (all but ``duplicates``)."""
        return {"protocol": self.protocol, "seed": self.seed, "val_size": self.val_size, "folds": self.folds,
                "fold": self.fold, "source": self.source}

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
SPLIT_KEYS = ("protocol", "seed", "val_size", "subset", "merged_duplicates", "folds", "fold", "source")
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
    problem = checks.split_problem(values)
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
