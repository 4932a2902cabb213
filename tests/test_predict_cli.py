"""``python -m skinlib predict`` with bad input: folders, huge images, broken or misplaced models, Ctrl-C.

Each test checks the message, the exit code, and that the good images of the same call are still reported.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinlib import predict

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny untrained 7-class model, exported."""
    keras = pytest.importorskip("keras")
    from skinlib import export

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x), name="tiny")
    return export.export(model, tmp_path_factory.mktemp("model") / "tiny.keras")


def image(path: Path, colour=(180, 90, 60)) -> Path:
    Image.new("RGB", (20, 15), colour).save(path)
    return path


def huge_jpeg(path: Path, width=15000, height=15000) -> Path:
    """A tiny JPEG whose header says width x height (Pillow refuses it before decoding)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def run_cli(capsys, *argv):
    from skinlib.__main__ import main

    code = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_folder_is_every_image_inside_it(model_file, tmp_path, capsys):
    folder = tmp_path / "lesions"
    folder.mkdir()
    expected = [image(folder / "a.jpg"), image(folder / "b.PNG"), image(folder / "c.jpeg")]
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    code, out, err = run_cli(capsys, folder, "--model", model_file, "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [r["image"] for r in results] == [str(p) for p in expected]
    assert all(sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5) for r in results)


def test_an_empty_folder_says_what_to_pass(model_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(capsys, tmp_path / "empty", "--model", model_file, "--json")
    assert code == 1
    [result] = json.loads(out)
    assert "is a folder with no .jpg, .jpeg or .png file directly in it" in result["error"]
    assert "pass image files" in err


def test_a_huge_image_is_an_error_entry_and_the_others_are_kept(model_file, tmp_path, capsys):
    good, big, other = image(tmp_path / "good.jpg"), huge_jpeg(tmp_path / "huge.jpg"), image(tmp_path / "b.png")
    code, out, err = run_cli(capsys, good, big, other, "--model", model_file, "--json")
    assert code == 1
    results = json.loads(out)
    assert [r["image"] for r in results] == [str(good), str(big), str(other)]
    assert "probabilities" in results[0] and "probabilities" in results[2]
    assert "225,000,000 pixels" in results[1]["error"] and "huge.jpg" in results[1]["error"]
    assert "huge.jpg" in err and "Traceback" not in err


def test_model_that_is_not_a_zip(tmp_path, capsys):
    fake = tmp_path / "model.keras"
    fake.write_text("this is not a model")
    code, out, err = run_cli(capsys, image(tmp_path / "a.jpg"), "--model", fake)
    assert code == 2 and out == ""
    assert f"model file '{fake}' is not a Keras model archive" in err and "not found" not in err
    hdf5 = tmp_path / "old.keras"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    code, _, err = run_cli(capsys, tmp_path / "a.jpg", "--model", hdf5)
    assert code == 2 and "HDF5 file (a legacy .h5 model)" in err


def test_model_that_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "vgg16.keras").write_bytes(b"")
    code, out, err = run_cli(capsys, image(tmp_path / "a.jpg"), "--model", folder)
    assert code == 2 and out == ""
    assert f"model '{folder}' is a folder, not a model file" in err and "vgg16.keras" in err
    assert "not found" not in err


def test_missing_model_is_reported_before_importing_a_framework(tmp_path):
    """In a fresh interpreter: the message, exit code 2, and neither Keras nor TensorFlow imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}
    plain = subprocess.run([sys.executable, "-m", "skinlib", "predict", "x.jpg", "--model", "missing.keras"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.strip() == ("error: model file 'missing.keras' not found; pass --model the .keras file "
                                    "written by skinlib.export.export")
    probe = ("import sys; from skinlib.__main__ import main; code = main(['predict', 'x.jpg', '--model', "
             "'missing.keras']); print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in "
             "sys.modules)); sys.exit(code)")
    checked = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 2 and checked.stdout.strip() == "[]"


def test_missing_images_do_not_load_the_model(tmp_path, capsys, monkeypatch):
    import zipfile

    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")  # passes the quick check, would fail to load
    code, out, err = run_cli(capsys, tmp_path / "gone.jpg", "--model", model, "--json")
    assert code == 1
    assert json.loads(out) == [{"image": str(tmp_path / "gone.jpg"), "error": f"'{tmp_path / 'gone.jpg'}': no such file"}]


def test_interrupt_prints_what_was_done(model_file, tmp_path, capsys, monkeypatch):
    images = [image(tmp_path / f"{name}.jpg") for name in "abc"]
    real = predict.classify
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "classify", interrupted)
    code, out, err = run_cli(capsys, *images, "--model", model_file, "--json")
    assert code == 130 and "Interrupted: 1 of 3 images done" in err
    assert [r["image"] for r in json.loads(out)] == [str(images[0])]


def test_framework_logs_are_quiet_unless_verbose(monkeypatch):
    absl_logging = pytest.importorskip("absl.logging")
    before = absl_logging.get_verbosity()
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    try:
        predict.quiet_frameworks(verbose=True)
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
        predict.quiet_frameworks(verbose=False)
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
        assert absl_logging.get_verbosity() == absl_logging.ERROR
    finally:
        absl_logging.set_verbosity(before)


def test_read_image_names_folder_and_bomb(tmp_path):
    with pytest.raises(predict.ImageError, match="is a folder, not an image file"):
        predict.read_image(tmp_path)
    with pytest.raises(predict.ImageError, match=r"has 225,000,000 pixels"):
        predict.read_image(huge_jpeg(tmp_path / "big.jpg"))
    assert predict.read_image(image(tmp_path / "ok.png")).shape == (15, 20, 3)
    assert np.asarray(predict.read_image(tmp_path / "ok.png")).dtype == np.uint8


def test_a_zip_that_is_not_a_keras_archive(tmp_path, capsys):
    import zipfile

    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("weights.txt", "x")
    code, _, err = run_cli(capsys, image(tmp_path / "a.jpg"), "--model", model)
    assert code == 2 and "is a zip archive but not a Keras model archive (it has no config.json)" in err


def test_native_stderr_is_hidden_but_python_messages_show(tmp_path):
    probe = ("import os, sys; from skinlib.predict import native_stderr_hidden\n"
             "with native_stderr_hidden(True):\n"
             "    os.write(2, b'native log line\\n'); print('error: from python', file=sys.stderr)\n"
             "os.write(2, b'after\\n')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "error: from python\nafter\n"


def grey16(path: Path) -> Path:
    """A 16-bit greyscale PNG whose values span 1,000-4,000 (a 12-bit sensor): all white if clipped at 255."""
    ramp = np.linspace(1000, 4000, 20 * 15).reshape(15, 20).astype(np.uint16)
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    return path


def test_a_16_bit_greyscale_png_is_scaled_by_its_range_not_saturated(tmp_path):
    from skinlib.data.images import decode_image

    path = grey16(tmp_path / "grey16.png")
    for pixels in (predict.read_image(path), decode_image(path, (15, 20))):
        assert pixels.dtype == np.uint8 and pixels.shape == (15, 20, 3)
        assert pixels.min() <= 1 and pixels.max() >= 254 and 100 < pixels.mean() < 155  # a ramp, not white


def test_an_image_below_the_minimum_size_is_refused_with_the_minimum(model_file, tmp_path, capsys):
    from skinlib.pixels import MIN_SIDE

    Image.new("RGB", (1, 1), (120, 80, 60)).save(tmp_path / "dot.png")
    code, out, err = run_cli(capsys, tmp_path / "dot.png", image(tmp_path / "ok.png"), "--model", model_file)
    assert code == 1 and "ok.png" in out and "dot.png:" not in out
    assert f"is 1x1 pixels, smaller than the {MIN_SIDE}x{MIN_SIDE} minimum (skinlib.pixels.MIN_SIDE)" in err
