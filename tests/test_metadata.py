"""load_metadata: the three metadata forms, image lookup, and a clear error for each kind of bad input."""

import shutil

import pandas as pd
import pytest

from skinlib import CLASSES
from skinlib.data import load_metadata
from skinlib.errors import DataError


def copy_dataset(source, destination):
    shutil.copytree(source, destination)
    return destination


def test_real_kaggle_metadata_with_downsized_images(real_data):
    meta = load_metadata(real_data, images="images_200x150")
    assert len(meta) == 10_015
    assert meta["lesion_id"].nunique() == 7_470
    assert meta["dx"].value_counts().to_dict() == {
        "nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
    assert (meta["dx"] == [CLASSES[i] for i in meta["label"]]).all()
    assert meta["age"].dtype == "float64" and meta["age"].isna().sum() == 57
    assert all(path.endswith(f"{image_id}.jpg") for path, image_id in zip(meta["path"], meta["image_id"]))


def test_dataverse_csv_gives_same_rows_plus_dataset(real_data):
    kaggle = load_metadata(real_data, images="images_200x150")
    dataverse = load_metadata(real_data / "HAM10000_metadata_dataverse.csv", images="images_200x150")
    assert list(dataverse["image_id"]) == list(kaggle["image_id"])
    assert set(dataverse["dataset"]) == {"vidir_molemax", "vidir_modern", "rosendahl", "vienna_dias"}
    pd.testing.assert_series_equal(dataverse["age"], kaggle["age"])


def test_dataverse_tab_form(real_data, tmp_path):
    frame = pd.read_csv(real_data / "HAM10000_metadata_dataverse.csv")
    frame.to_csv(tmp_path / "HAM10000_metadata.tab", sep="\t", index=False, quoting=1)
    meta = load_metadata(tmp_path, images=real_data / "images_200x150")
    assert len(meta) == 10_015 and "dataset" in meta.columns


def test_partial_image_folder_drop(real_data):
    meta = load_metadata(real_data, images="images_600x450", missing="drop")
    assert len(meta) == 239
    assert meta["dx"].value_counts()["nv"] == 116


def test_partial_image_folder_raise_names_count_and_examples(real_data):
    with pytest.raises(DataError, match=r"9776 of 10015 images .* missing .*first: ISIC_"):
        load_metadata(real_data, images="images_600x450")


def test_official_layout(synthetic_data):
    meta = load_metadata(synthetic_data)
    assert len(meta) == 70
    assert set(meta["dx"]) == set(CLASSES)
    assert meta["path"].str.contains("HAM10000_images_part_1").any()
    assert meta["path"].str.contains("HAM10000_images_part_2").any()


def test_nothing_at_root(tmp_path):
    with pytest.raises(DataError, match="does not exist.*skinlib download"):
        load_metadata(tmp_path / "nowhere")
    with pytest.raises(DataError, match="No HAM10000 metadata found"):
        load_metadata(tmp_path)


def test_missing_columns(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    frame = pd.read_csv(root / "HAM10000_metadata.csv").drop(columns=["dx", "sex"])
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv' lacks the column\(s\) \['dx', 'sex'\]"):
        load_metadata(root)


def test_unknown_dx_names_row_and_accepted_values(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    frame = pd.read_csv(root / "HAM10000_metadata.csv")
    frame.loc[4, "dx"] = "melanoma"
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"unknown dx 'melanoma' at data row 5 \(line 6\).*akiec, bcc"):
        load_metadata(root)


def test_duplicate_image_id(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    frame = pd.read_csv(root / "HAM10000_metadata.csv")
    frame.loc[9, "image_id"] = frame.loc[2, "image_id"]
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"duplicate image_id '.*' at data rows 3 and 10"):
        load_metadata(root)


def test_missing_image_file(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    meta = load_metadata(root)
    victim = meta["path"].iloc[3]
    (tmp_path / "gone.jpg").write_bytes(open(victim, "rb").read())
    import os
    os.remove(victim)
    with pytest.raises(DataError, match=rf"1 of 70 images .* missing .*first: {meta['image_id'].iloc[3]}"):
        load_metadata(root)
    assert len(load_metadata(root, missing="drop")) == 69


def test_malformed_csv(tmp_path):
    (tmp_path / "HAM10000_metadata.csv").write_text('lesion_id,image_id,dx\n"unclosed,quote,nv\n')
    with pytest.raises(DataError, match="Cannot parse the metadata file"):
        load_metadata(tmp_path)


def test_missing_image_folder(synthetic_data):
    with pytest.raises(DataError, match="Image folder .*images_200x150' does not exist"):
        load_metadata(synthetic_data, images="images_200x150")


def test_empty_and_header_only_csv_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "HAM10000_metadata.csv"
    path.write_text("lesion_id,image_id,dx,dx_type,age,sex,localization\n")
    with pytest.raises(DataError, match=rf"'{path}' has a header but no data rows.*--parts metadata"):
        load_metadata(tmp_path)
    path.write_text("")
    with pytest.raises(DataError, match=rf"'{path}' is empty. Restore it"):
        load_metadata(tmp_path)
    assert path.read_text() == ""  # nothing rewritten


def test_non_numeric_age_names_file_row_and_column(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    frame = pd.read_csv(root / "HAM10000_metadata.csv")
    frame["age"] = frame["age"].astype("object")
    frame.loc[6, "age"] = "unknown"
    frame.loc[8, "age"] = "forty"
    frame.loc[3, "age"] = None
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv': column `age` has 'unknown' at data row 7 "
                                        r"\(line 8\), which is not a number \(2 such row\(s\) in all\).*leave "
                                        r"the cell empty"):
        load_metadata(root)


def test_integer_and_quoted_ages_are_float(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    frame = pd.read_csv(root / "HAM10000_metadata.csv")
    frame["age"] = frame["age"].fillna(0).astype(int).astype(str).radd(" ")  # " 45": text with a space
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    meta = load_metadata(root)
    assert meta["age"].dtype == "float64" and meta["age"].iloc[0] == float(frame["age"].iloc[0])


def test_semicolon_csv_gets_a_separator_hint(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    frame = pd.read_csv(root / "HAM10000_metadata.csv")
    frame.to_csv(root / "HAM10000_metadata.csv", index=False, sep=";")
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv' is separated by semicolons \(;\).*Save it "
                                        r"again as CSV with commas"):
        load_metadata(root)


def test_lesion_ids_with_trailing_spaces_are_stripped(real_data, tmp_path):
    from skinlib.data import split

    frame = pd.read_csv(real_data / "HAM10000_metadata.csv")
    repeat = frame["lesion_id"].duplicated(keep="first")  # the second and later photos of a lesion
    frame.loc[repeat, "lesion_id"] = frame.loc[repeat, "lesion_id"] + "  "
    frame.to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    meta = load_metadata(tmp_path, images=real_data / "images_200x150")
    assert int(repeat.sum()) > 2000 and meta["lesion_id"].nunique() == 7_470
    assert split(meta, "grouped", seed=0).shared_lesions("test") == 0


def test_upper_case_extensions_are_found(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    for path in sorted((root / "HAM10000_images_part_1").iterdir())[::2]:
        path.rename(path.with_suffix(".JPEG"))
    meta = load_metadata(root)
    assert len(meta) == 70 and meta["path"].str.endswith(".JPEG").any()


def test_unreadable_extension_is_named(synthetic_data, tmp_path):
    root = copy_dataset(synthetic_data, tmp_path / "d")
    for folder in ("HAM10000_images_part_1", "HAM10000_images_part_2"):
        for path in sorted((root / folder).iterdir()):
            path.rename(path.with_suffix(".tif"))
    with pytest.raises(DataError, match=r"70 of 70 images .* missing .*hold files ending \.tif.*\.jpg, \.jpeg, "
                                        r"\.png \(any case\)"):
        load_metadata(root)


def test_data_dir_that_is_a_file_is_refused_naming_its_folder(synthetic_data, tmp_path, monkeypatch):
    from skinlib import data

    csv = synthetic_data / "HAM10000_metadata.csv"
    with pytest.raises(DataError, match=rf"data_dir '{csv}' is a file, not a folder.*perhaps '{synthetic_data}'"):
        data.locate(csv)
    monkeypatch.setenv("SKINLIB_DATA", str(csv))
    with pytest.raises(DataError, match=r"\$SKINLIB_DATA '.*HAM10000_metadata.csv' is a file, not a folder"):
        data.locate(None)
    notes = tmp_path / "notes.txt"
    notes.write_text("lesion_id,image_id\n")
    with pytest.raises(DataError, match=rf"'{notes}' is a file, not a folder.*perhaps '{tmp_path}'"):
        load_metadata(notes)
