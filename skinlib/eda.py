"""Exploratory figures and tables of HAM10000: the study's, corrected, and what it did not look at.

Every function takes the metadata frame of :func:`skinlib.data.load_metadata` (and image arrays where it
needs pixels) and returns a table (``pandas.DataFrame``) or a ``matplotlib.figure.Figure``. Figures are made
without pyplot's global state, so a notebook shows each one once, when it is returned.

The study's colour analysis read the images with OpenCV, which returns channels in BGR order, and then
treated them as RGB: its "red" was the blue channel and its images were shown with red and blue swapped.
Here images are decoded by Pillow in RGB order (:func:`skinlib.data.load_images`), channel ``i`` is
``CHANNELS[i]``, and images are shown as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from skinlib.classes import CLASS_NAMES, CLASSES, MALIGNANT
from skinlib.data import load_images, split
from skinlib.data.metadata import read_metadata_table

CHANNELS = ("red", "green", "blue")
"""Channel names in the order of the RGB arrays skinlib decodes."""
APPEARANCE = ("red", "green", "blue", "mean")
"""The four "appearance as the mean changes" grids: by each channel's mean, and by the mean of all three."""
DATAVERSE_METADATA = ("HAM10000_metadata_dataverse.csv", "HAM10000_metadata.tab", "HAM10000_metadata")
"""Metadata files of the Harvard Dataverse form, which carry the ``dataset`` (image source) column."""
EDA_IMAGE_SIZE = (75, 100)
"""(height, width) at which colour statistics are computed: small, and the study's aspect ratio."""


def _figure(nrows: int = 1, ncols: int = 1, figsize=(8, 4), **kwargs):
    """A new figure (outside pyplot) and its axes."""
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def malignancy(meta: pd.DataFrame) -> pd.Series:
    """ "malignant" for :data:`skinlib.MALIGNANT` classes, else "benign", per row."""
    return meta["dx"].isin(MALIGNANT).map({True: "malignant", False: "benign"}).rename("malignancy")


# ---------------------------------------------------------------------------------------------------------
# The study's figures
# ---------------------------------------------------------------------------------------------------------

def benign_vs_malignant(meta: pd.DataFrame) -> Figure:
    """Bar chart of benign and malignant images (malignant: akiec, bcc, mel)."""
    counts = malignancy(meta).value_counts().reindex(["benign", "malignant"], fill_value=0)
    fig, ax = _figure(figsize=(5, 4))
    bars = ax.bar(counts.index, counts.to_numpy(), color=["tab:green", "tab:red"])
    ax.bar_label(bars, labels=[f"{n:,} ({n / counts.sum():.0%})" for n in counts])
    ax.set(title="Benign vs malignant images", ylabel="images")
    return fig


def counts(meta: pd.DataFrame, column: str, title: str | None = None) -> Figure:
    """Images per value of ``column`` (``dx``, ``localization``, ``dx_type``, ``sex`` ...), largest first."""
    if column not in meta.columns:
        raise KeyError(f"no column {column!r} in the metadata; columns: {list(meta.columns)}")
    values = meta[column].astype("string").fillna("missing").value_counts()
    fig, ax = _figure(figsize=(8, max(3.0, 0.35 * len(values) + 1)))
    sns.barplot(x=values.to_numpy(), y=values.index.to_numpy(), ax=ax, color="tab:blue", orient="h")
    ax.bar_label(ax.containers[0], labels=[f"{n:,}" for n in values])
    ax.set(title=title or f"Images per {column}", xlabel="images", ylabel=column)
    return fig


def sex_of_malignant(meta: pd.DataFrame) -> Figure:
    """Sex of the patients of malignant images, per malignant class."""
    malignant = meta.loc[meta["dx"].isin(MALIGNANT)]
    table = pd.crosstab(malignant["dx"], malignant["sex"].astype("string").fillna("missing"))
    fig, ax = _figure(figsize=(7, 4))
    table.plot.bar(ax=ax, rot=0)
    ax.set(title="Sex of the malignant cases", xlabel="diagnosis", ylabel="images")
    return fig


def age_distribution(meta: pd.DataFrame, bins: int = 18) -> Figure:
    """Histograms of age: all images (left) and malignant ones (right)."""
    fig, (left, right) = _figure(1, 2, figsize=(11, 4), sharex=True)
    edges = np.linspace(0, 90, bins + 1)
    sns.histplot(meta["age"].dropna(), bins=edges, ax=left, color="tab:blue")
    left.set(title=f"Age, all images (n={meta['age'].notna().sum():,}; {meta['age'].isna().sum()} unknown)",
             xlabel="age (years)", ylabel="images")
    malignant = meta.loc[meta["dx"].isin(MALIGNANT), "age"].dropna()
    sns.histplot(malignant, bins=edges, ax=right, color="tab:red")
    right.set(title=f"Age, malignant images (n={len(malignant):,})", xlabel="age (years)", ylabel="images")
    return fig


def sample_grid(meta: pd.DataFrame, per_class: int = 5, size: tuple[int, int] = (150, 200), seed: int = 0) -> Figure:
    """``per_class`` random images of each of the 7 classes (a 7 x 5 grid by default), in true colour."""
    rng = np.random.default_rng(seed)
    picks = []
    for dx in CLASSES:
        rows = meta.index[meta["dx"] == dx].to_numpy()
        picks.append(rng.choice(rows, size=min(per_class, len(rows)), replace=False) if len(rows) else [])
    fig, axes = _figure(len(CLASSES), per_class, figsize=(2.0 * per_class, 1.6 * len(CLASSES)), squeeze=False)
    for row, (dx, chosen) in enumerate(zip(CLASSES, picks)):
        images = load_images(meta.loc[chosen], size=size, cache=False, progress=False) if len(chosen) else []
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_axis_off()
            if col < len(images):
                ax.imshow(images[col])
        axes[row, 0].set_axis_on()
        axes[row, 0].set(xticks=[], yticks=[])
        axes[row, 0].set_ylabel(dx, rotation=0, ha="right", va="center", fontsize=11)
    fig.suptitle("Samples of each class")
    return fig


def colour_means(meta: pd.DataFrame, images: np.ndarray | None = None, size: tuple[int, int] = EDA_IMAGE_SIZE,
                 chunk: int = 512) -> pd.DataFrame:
    """Mean of each RGB channel and of all three (the grey mean), per image (0..255), and each channel divided by
    the grey mean (``red_rel`` ...), as the study's EDA compared colours independently of brightness.

    Args:
        meta: the images to measure.
        images: their uint8 array (N, H, W, 3) in RGB order, if already decoded; else decoded at ``size``.

    Returns:
        Columns ``image_id``, ``dx``, ``red``, ``green``, ``blue``, ``mean``, ``red_rel``, ``green_rel``,
        ``blue_rel``; one row per image.
    """
    if images is None:
        images = load_images(meta, size=size)
    if len(images) != len(meta):
        raise ValueError(f"colour_means: {len(images)} images for {len(meta)} metadata rows")
    means = np.concatenate([np.asarray(images[i:i + chunk], dtype=np.float32).mean(axis=(1, 2))
                            for i in range(0, len(images), chunk)]) if len(images) else np.empty((0, 3))
    frame = pd.DataFrame(means, columns=list(CHANNELS))
    frame.insert(0, "dx", meta["dx"].to_numpy())
    frame.insert(0, "image_id", meta["image_id"].to_numpy())
    frame["mean"] = frame[list(CHANNELS)].mean(axis=1)
    for channel in CHANNELS:
        frame[f"{channel}_rel"] = frame[channel] / frame["mean"].where(frame["mean"] > 0)
    return frame


def colour_pairplot(means: pd.DataFrame, max_points: int = 3000, seed: int = 0) -> Figure:
    """Pair plot of the per-image channel means, coloured by class (at most ``max_points`` points)."""
    import matplotlib.pyplot as plt

    shown = means.sample(n=min(max_points, len(means)), random_state=seed) if len(means) > max_points else means
    grid = sns.pairplot(shown, vars=list(CHANNELS), hue="dx", hue_order=[c for c in CLASSES if c in set(shown["dx"])],
                        plot_kws={"s": 8, "alpha": 0.5}, corner=True, height=2.3)
    grid.figure.suptitle("Per-image mean of each colour channel", y=1.02)
    plt.close(grid.figure)  # shown when returned, not again by pyplot
    return grid.figure


def appearance_by_mean(meta: pd.DataFrame, means: pd.DataFrame, channel: str = "mean", columns: int = 7,
                       size: tuple[int, int] = EDA_IMAGE_SIZE, images: np.ndarray | None = None) -> Figure:
    """How images look as a channel's mean grows: per class, images at evenly spaced quantiles of ``channel``.

    Args:
        meta: the metadata the ``means`` were computed on (same rows, same order).
        means: from :func:`colour_means`.
        channel: "red", "green", "blue" (an RGB channel, in true RGB order) or "mean" (all three).
        columns: images per class, from the lowest to the highest value.
        size: (height, width) to decode the chosen images at, when ``images`` is not given.
        images: the decoded images of ``meta`` (RGB uint8, same rows), to show without decoding again.
    """
    if channel not in APPEARANCE:
        raise ValueError(f"unknown channel {channel!r}; accepted: {', '.join(APPEARANCE)}")
    if len(means) != len(meta) or (images is not None and len(images) != len(meta)):
        raise ValueError("appearance_by_mean: `means` (and `images`) must have one row per metadata row "
                         "(use colour_means(meta, images))")
    values = means[channel].to_numpy()
    fig, axes = _figure(len(CLASSES), columns, figsize=(1.7 * columns, 1.45 * len(CLASSES)), squeeze=False)
    for row, dx in enumerate(CLASSES):
        positions = np.flatnonzero(means["dx"].to_numpy() == dx)
        for ax in axes[row]:
            ax.set_axis_off()
        if not len(positions):
            continue
        order = positions[np.argsort(values[positions], kind="stable")]
        chosen = order[np.unique(np.linspace(0, len(order) - 1, columns).round().astype(int))]
        shown = (np.asarray(images[chosen]) if images is not None
                 else load_images(meta.iloc[chosen], size=size, cache=False, progress=False))
        for col, (position, image) in enumerate(zip(chosen, shown)):
            axes[row, col].imshow(image)
            axes[row, col].set_title(f"{values[position]:.0f}", fontsize=8)
        axes[row, 0].set_axis_on()
        axes[row, 0].set(xticks=[], yticks=[])
        axes[row, 0].set_ylabel(dx, rotation=0, ha="right", va="center")
    label = "mean of R, G and B" if channel == "mean" else f"mean of the {channel} channel"
    fig.suptitle(f"Appearance as the {label} grows (left to right, per class)")
    return fig


# ---------------------------------------------------------------------------------------------------------
# What the study missed
# ---------------------------------------------------------------------------------------------------------

def images_per_lesion(meta: pd.DataFrame) -> pd.DataFrame:
    """How many lesions have 1, 2, 3 ... images, and how many images those lesions hold."""
    per_lesion = meta.groupby("lesion_id").size()
    table = per_lesion.value_counts().sort_index().rename("lesions").to_frame()
    table.index.name = "images per lesion"
    table["images"] = table.index.to_numpy() * table["lesions"]
    table["share of images"] = table["images"] / table["images"].sum()
    return table


def images_per_lesion_figure(meta: pd.DataFrame) -> Figure:
    """Bar chart of lesions by their number of images."""
    table = images_per_lesion(meta)
    fig, ax = _figure(figsize=(6, 4))
    bars = ax.bar(table.index.astype(str), table["lesions"], color="tab:purple")
    ax.bar_label(bars, labels=[f"{n:,}" for n in table["lesions"]])
    ax.set(title=f"Images per lesion ({len(meta):,} images of {meta['lesion_id'].nunique():,} lesions)",
           xlabel="images of the lesion", ylabel="lesions")
    return fig


def lesions_with_several_images(meta: pd.DataFrame) -> pd.DataFrame:
    """Per class: lesions, lesions photographed more than once, their share, and images per lesion."""
    per_lesion = meta.groupby(["dx", "lesion_id"]).size().rename("images").reset_index()
    grouped = per_lesion.groupby("dx")["images"]
    table = pd.DataFrame({
        "images": grouped.sum(),
        "lesions": grouped.size(),
        "lesions with several images": grouped.apply(lambda s: int((s > 1).sum())),
    }).reindex(CLASSES, fill_value=0)
    table.loc["all"] = table.sum()
    table["share of lesions with several images"] = table["lesions with several images"] / table["lesions"]
    table["images per lesion"] = table["images"] / table["lesions"]
    return table


def split_leakage(meta: pd.DataFrame, seed: int = 0, val_size: float = 0.1) -> pd.DataFrame:
    """For the study's split ("study") and the grouped one: per part, images and those whose lesion is in train.

    The study split images, not lesions: a validation or test image whose lesion has another photo in the
    training set measures memory of that lesion, not diagnosis. The grouped protocol has none.
    """
    rows = []
    for protocol in ("study", "grouped"):
        parts = split(meta, protocol=protocol, seed=seed, val_size=val_size)
        for part in ("val", "test"):
            frame = getattr(parts, part)
            shared = parts.shared_lesions(part)
            rows.append({"protocol": protocol, "part": part, "images": len(frame),
                         "images whose lesion is in train": shared,
                         "share": shared / len(frame) if len(frame) else float("nan")})
    return pd.DataFrame(rows).set_index(["protocol", "part"])


def split_leakage_figure(leakage: pd.DataFrame) -> Figure:
    """Bar chart of :func:`split_leakage`: share of validation and test images leaking from train."""
    shares = leakage["share"].unstack("part").reindex(index=["study", "grouped"], columns=["val", "test"])
    fig, ax = _figure(figsize=(6, 4))
    shares.plot.bar(ax=ax, rot=0)
    for container in ax.containers:
        ax.bar_label(container, fmt="{:.0%}")
    ax.set(title="Images whose lesion also has a photo in training", ylabel="share of the part",
           xlabel="split protocol", ylim=(0, max(0.1, float(np.nanmax(shares.to_numpy())) * 1.25)))
    return fig


def class_balance(parts) -> Figure:
    """Share of each class in train, validation and test of a :class:`skinlib.data.Split`."""
    shares = parts.class_shares()
    fig, ax = _figure(figsize=(9, 4))
    shares.plot.bar(ax=ax, rot=0)
    ax.set(title=f"Class balance of each part ({parts.protocol} split, seed {parts.seed})", xlabel="class",
           ylabel="share of images")
    return fig


def find_dataverse_metadata(root: str | Path) -> Path | None:
    """The metadata file with the ``dataset`` column in ``root`` (the Dataverse form), or None."""
    root = Path(root)
    for name in DATAVERSE_METADATA:
        path = root / name
        if path.is_file() and "dataset" in read_metadata_table(path).columns:
            return path
    return None


def dataset_sources(meta: pd.DataFrame, root: str | Path | None = None) -> pd.DataFrame | None:
    """Images per class (rows) and source collection (columns: vidir_molemax, rosendahl ...).

    The source is the ``dataset`` column of the Dataverse metadata: taken from ``meta`` if it has it, else
    from the Dataverse CSV in ``root``. Returns None when neither has it.
    """
    if "dataset" in meta.columns:
        source = meta[["image_id", "dx", "dataset"]]
    else:
        path = find_dataverse_metadata(root) if root is not None else None
        if path is None:
            return None
        table = read_metadata_table(path)[["image_id", "dataset"]]
        source = meta[["image_id", "dx"]].merge(table, on="image_id", how="left")
    crosstab = pd.crosstab(source["dx"], source["dataset"].astype("string").fillna("unknown"))
    return crosstab.reindex([c for c in CLASSES if c in crosstab.index])


def dataset_sources_figure(sources: pd.DataFrame) -> Figure:
    """Stacked bars of :func:`dataset_sources`: where each class's images come from."""
    fig, ax = _figure(figsize=(9, 4))
    sources.plot.bar(stacked=True, ax=ax, rot=0)
    ax.set(title="Source collection of the images, per class", xlabel="class", ylabel="images")
    return fig


def class_table(meta: pd.DataFrame) -> pd.DataFrame:
    """Images, lesions and share of images per class, with the class names."""
    table = pd.DataFrame({
        "name": [CLASS_NAMES[c] for c in CLASSES],
        "images": meta["dx"].value_counts().reindex(CLASSES, fill_value=0).to_numpy(),
        "lesions": meta.groupby("dx")["lesion_id"].nunique().reindex(CLASSES, fill_value=0).to_numpy(),
    }, index=pd.Index(CLASSES, name="dx"))
    table["share of images"] = table["images"] / table["images"].sum()
    return table
