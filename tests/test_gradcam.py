"""skinlib.gradcam: a tiny trained model looks at the synthetic lesion; the public features/head split; focus."""

import keras
import numpy as np
import pytest

from skinlib import export, gradcam

SIZE, BLOB = 32, 6


def blob_images(n, seed):
    """Dark noisy images; class 1 has a bright BLOBxBLOB square at a random place (returned as a mask)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, SIZE, SIZE, 3)).astype(np.uint8)
    labels = np.arange(n) % 2
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i in np.flatnonzero(labels):
        top, left = rng.integers(0, SIZE - BLOB, 2)
        masks[i, top:top + BLOB, left:left + BLOB] = True
        images[i][masks[i]] = rng.integers(200, 256, (BLOB * BLOB, 3))
    return images, labels, masks


def flat_model():
    """Preprocessing, two convolutions, then a pooled softmax head: one functional graph."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x), name="classifier")


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    images, labels, _ = blob_images(256, seed=0)
    model = flat_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    return model


def test_gradcam_peaks_on_the_synthetic_lesion(trained):
    images, labels, masks = blob_images(40, seed=1)
    assert (trained.predict(images, verbose=0).argmax(axis=1) == labels).mean() > 0.9  # it learned
    lesions = np.flatnonzero(labels)
    heat = gradcam.gradcam(trained, images[lesions], class_index=1)
    assert heat.shape == (len(lesions), SIZE, SIZE)
    assert heat.min() >= 0 and np.isclose(heat.max(axis=(1, 2)), 1).all()
    peaks_on_blob = [mask[np.unravel_index(h.argmax(), h.shape)] for h, mask in zip(heat, masks[lesions])]
    assert np.mean(peaks_on_blob) >= 0.9
    focus = [gradcam.lesion_focus(h, m) for h, m in zip(heat, masks[lesions])]
    assert np.median(focus) > 10 * BLOB**2 / SIZE**2  # far more heat on the lesion than its area share


def test_split_is_public_and_batched(trained):
    """The default layer is the last 4-D one; maps of a batch equal maps one image at a time."""
    images, _, _ = blob_images(6, seed=2)
    explainer = gradcam.GradCAM(trained)
    assert explainer.layer.name == "last_conv"
    np.testing.assert_allclose(explainer.head(explainer.features(images)), trained.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradcam.gradcam(trained, images, batch_size=4),
                               np.concatenate([gradcam.gradcam(trained, image) for image in images]), atol=1e-5)


def test_an_exported_model_is_explained_through_the_model_it_wraps(trained, tmp_path):
    images, _, _ = blob_images(3, seed=3)
    deployed = export.load(export.export(trained, tmp_path / "blob.keras", classes=["none", "blob"]))
    with pytest.raises(ValueError, match="explain the model it wraps"):
        gradcam.GradCAM(deployed, layer="last_conv")
    inner = export.wrapped(deployed)
    np.testing.assert_allclose(gradcam.gradcam(inner, images), gradcam.gradcam(trained, images), atol=1e-5)


def test_gradcam_matches_the_keras_io_recipe_on_a_flat_model():
    """Against the classic formulation: gradients of the intermediate output taken with the backend."""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("reference computed with tf.GradientTape")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).random((3, 16, 16, 3)).astype("float32")
    both = keras.Model(model.input, [model.get_layer("conv").output, model.output])
    with tf.GradientTape() as tape:
        activations, proba = both(images)
        log_p = tf.math.log(proba + gradcam.EPSILON)
        score = tf.reduce_sum((log_p - tf.reduce_mean(log_p, -1, keepdims=True)) * tf.one_hot([0, 1, 2], 3))
    grads, activations = tape.gradient(score, activations).numpy(), activations.numpy()
    expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * activations).sum(-1), 0)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    actual = gradcam.gradcam(model, images, class_index=[0, 1, 2], upsample=False)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_lesion_focus():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 2:5] = True
    assert gradcam.lesion_focus(mask.astype(float), mask) == 1.0
    assert gradcam.lesion_focus((~mask).astype(float), mask) == 0.0
    assert gradcam.lesion_focus(np.ones((10, 10)), mask) == pytest.approx(0.09)
    on, off = np.zeros((10, 10)), np.zeros((10, 10))
    on[3, 3], off[8, 8] = 1, 1
    assert gradcam.lesion_focus(on + 0.1 * off, mask) > gradcam.lesion_focus(off + 0.1 * on, mask)
    # a mask of another size is resized to the heatmap
    assert gradcam.lesion_focus(mask.astype(float), np.kron(mask, np.ones((3, 3), dtype=bool))) == 1.0
    assert np.isnan(gradcam.lesion_focus(np.zeros((10, 10)), mask))


def test_overlay_and_real_mask(real_data):
    mask_path = sorted((real_data / "masks_600x450").glob("ISIC_*_segmentation.png"))[0]
    mask = gradcam.load_mask(mask_path)
    assert mask.shape == (450, 600) and 0 < mask.mean() < 1
    small = gradcam.load_mask(mask_path, size=(150, 200))
    assert small.shape == (150, 200) and abs(small.mean() - mask.mean()) < 0.02
    image = np.full((150, 200, 3), 128, dtype=np.uint8)
    picture = gradcam.overlay(image, small.astype(float))
    assert picture.shape == image.shape and picture.dtype == np.uint8
    assert not np.array_equal(picture[small][0], picture[~small][0])  # hot lesion, cold background
    with pytest.raises(ValueError, match="lesion mask"):
        gradcam.load_mask(real_data / "README.md")


def test_bad_layer_is_named(trained):
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        gradcam.GradCAM(trained, layer="nope")


HEAVY = {"inception_v3", "inception_resnet_v2", "densenet201"}  # 10-20 s each on 2 CPU cores


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if name in HEAVY else [])
    for name in ("baseline", "vgg16", "inception_v3", "inception_resnet_v2", "densenet201")])
def test_every_study_model_is_explained(name):
    """Grad-CAM of each architecture at its registry's last conv layer, one map per class."""
    from skinlib import backbones, models

    model = models.build(name, input_shape=(75, 75, 3), weights=None, preprocess="tf")
    explainer = gradcam.GradCAM(model)
    assert explainer.layer.name == backbones.get(name).last_conv_layer
    image = np.random.default_rng(0).integers(0, 256, (1, 75, 75, 3)).astype(np.uint8)
    # One map per class. The centred logits sum to zero over the classes, so their channel weights do too:
    # unless every gradient vanished, some class has a positive map (an untrained net may give others 0).
    heat = explainer(np.repeat(image, 7, axis=0), class_index=np.arange(7))
    assert heat.shape == (7, 75, 75) and np.isfinite(heat).all()
    assert heat.min() >= 0 and 0.9 < heat.max() <= 1.0


def test_sample_per_class_and_focus_table(tmp_path):
    import pandas as pd
    from PIL import Image

    labels = np.array([0] * 10 + [4] * 3 + [5] * 40)
    shown = gradcam.sample_per_class(labels, per_class=2, seed=0)
    assert sorted(labels[shown].tolist()) == [0, 0, 4, 4, 5, 5]
    assert np.array_equal(shown, gradcam.sample_per_class(labels, per_class=2, seed=0))  # seeded
    assert not np.array_equal(shown, gradcam.sample_per_class(labels, per_class=2, seed=1))
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[:5] = 255  # the lesion is half the image
    Image.fromarray(mask).save(tmp_path / "ISIC_1_segmentation.png")
    heat = np.zeros((2, 10, 10))
    heat[:, :5] = 1.0  # all heat on the lesion
    frame = pd.DataFrame({"image_id": ["ISIC_1", "ISIC_2"], "dx": ["mel", "nv"]})
    table = gradcam.focus_table(heat, frame, tmp_path, predicted=[4, 5])
    assert table.loc[0, "lesion_focus"] == 1.0 and table.loc[0, "lesion_share"] == 0.5
    assert table.loc[0, "focus_ratio"] == 2.0 and np.isnan(table.loc[1, "focus_ratio"])  # no mask for ISIC_2
    assert gradcam.titles(table)[0] == "true mel | explains mel | focus 2.0x"
