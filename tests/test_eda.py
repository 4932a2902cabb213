"""EDA figures and tables: the study's figures with true RGB channels, and what it missed."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from skinlib import data, eda


@pytest.fixture(scope="module")
def meta(synthetic_data):
    return data.load_metadata(synthetic_data)


def test_colour_means_are_in_rgb_order(tmp_path):
    """The study's channel swap: a red image must measure red, not blue."""
    paths = []
    for name, colour in (("red", (250, 10, 10)), ("blue", (10, 10, 250))):
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (40, 30), colour).save(path)
        paths.append(str(path))
    frame = pd.DataFrame({"image_id": ["red", "blue"], "dx": ["mel", "nv"], "path": paths})
    means = eda.colour_means(frame, size=(30, 40))
    assert means.loc[0, "red"] > 240 and means.loc[0, "blue"] < 15
    assert means.loc[1, "blue"] > 240 and means.loc[1, "red"] < 15
    assert means.loc[0, "mean"] == pytest.approx((250 + 10 + 10) / 3, abs=2)
    # each channel over the grey mean, as the study's EDA: brightness-free colour
    assert means.loc[0, "red_rel"] == pytest.approx(means.loc[0, "red"] / means.loc[0, "mean"])
    assert means.loc[0, ["red_rel", "green_rel", "blue_rel"]].sum() == pytest.approx(3.0)


def test_study_figures_are_figures(meta):
    means = eda.colour_means(meta, size=(30, 40))
    figures = [eda.benign_vs_malignant(meta), eda.counts(meta, "localization"), eda.sex_of_malignant(meta),
               eda.age_distribution(meta), eda.sample_grid(meta, per_class=5, size=(30, 40)),
               eda.colour_pairplot(means)]
    figures += [eda.appearance_by_mean(meta, means, channel, size=(30, 40)) for channel in eda.APPEARANCE]
    assert all(isinstance(fig, Figure) for fig in figures)
    assert len(figures[4].axes) == 7 * 5  # the 7 x 5 sample grid
    with pytest.raises(ValueError, match="unknown channel"):
        eda.appearance_by_mean(meta, means, "alpha")
    with pytest.raises(KeyError, match="no column 'site'"):
        eda.counts(meta, "site")


def test_lesion_tables_and_leakage(meta):
    per_lesion = eda.images_per_lesion(meta)
    assert per_lesion["images"].sum() == len(meta) and per_lesion["lesions"].sum() == meta["lesion_id"].nunique()
    several = eda.lesions_with_several_images(meta)
    assert several.loc["all", "images"] == len(meta)
    leakage = eda.split_leakage(meta, seed=0)
    assert (leakage.loc["grouped", "images whose lesion is in train"] == 0).all()
    assert leakage.loc["study", "images whose lesion is in train"].sum() > 0  # 1-3 images per lesion leak
    assert isinstance(eda.split_leakage_figure(leakage), Figure)
    assert isinstance(eda.class_balance(data.split(meta, "study")), Figure)


def test_dataset_sources(meta, tmp_path):
    assert eda.dataset_sources(meta, tmp_path) is None  # no Dataverse CSV there
    sources = meta.assign(dataset=np.where(meta.index % 2, "rosendahl", "vidir_modern"))
    table = eda.dataset_sources(sources)
    assert table.to_numpy().sum() == len(meta) and set(table.columns) == {"rosendahl", "vidir_modern"}
    assert isinstance(eda.dataset_sources_figure(table), Figure)
