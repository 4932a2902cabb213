"""The study's architectures: exact parameter counts, preprocessing, BatchNormalization semantics, bad input."""

import keras
import numpy as np
import pytest

from skinlib import augment, backbones, models, recipes
from skinlib.preprocessing import Preprocess, PreprocessError

# The study's own numbers (weights=None, input 192x256x3; the baseline at 64x64x3), and the trainable counts of each
# stage with the study's BatchNorm action (its model.summary()).
STUDY_COUNTS = {
    "baseline": {"total": 2_124_839},
    "vgg16": {"total": 14_980_935, ("head", "none"): 266_247, ("top", "none"): 7_345_671},
    "inception_v3": {"total": 22_855_463, ("top", "train"): 12_178_247, ("all", "train"): 22_821_031},
    "inception_resnet_v2": {"total": 55_127_271, ("top", "train"): 24_352_647},
    "densenet201": {"total": 19_309_127, ("top", "train"): 8_097_479, ("all", "train"): 19_080_071},
}
STUDY_UNFREEZE_INDEX = {"vgg16": 15, "inception_v3": 249, "inception_resnet_v2": 618, "densenet201": 481}
"""The study's ``layers[index:]`` in keras.applications' layer list (its cells[25], [15], [23], [23])."""


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    yield
    keras.backend.clear_session()


def _images(n=4, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.mark.parametrize("name", list(STUDY_COUNTS))
def test_parameter_counts_are_the_studys(name):
    model = models.build(name, weights=None)
    spec = backbones.get(name)
    assert model.input_shape[1:] == spec.input_shape
    assert model.name == name
    assert models.param_counts(model)["total"] == STUDY_COUNTS[name]["total"]
    for (layers, bn), expected in ((k, v) for k, v in STUDY_COUNTS[name].items() if k != "total"):
        models.set_trainable(model, layers, bn=bn)
        assert models.param_counts(model)["trainable"] == expected, (layers, bn)
    if spec.unfreeze is not None:
        found = models.backbone_layers(model)
        position = [layer.name for layer in found].index(spec.unfreeze)
        first_trained = position if spec.unfreeze_inclusive else position + 1
        assert first_trained + 1 == STUDY_UNFREEZE_INDEX[name]  # +1: keras.applications' layers[0] is the Input
        models.set_trainable(model, "top", bn="frozen")
        assert not any(layer.trainable for layer in found[:first_trained])
        assert all(layer.trainable for layer in found[first_trained:]
                   if not isinstance(layer, keras.layers.BatchNormalization) and layer.weights)
        assert not any(l.trainable for l in found if isinstance(l, keras.layers.BatchNormalization))
        models.set_trainable(model, "head", bn="frozen")
        assert models.param_counts(model)["trainable"] == sum(
            int(np.prod(w.shape)) for n in ("head_dense", "predictions") for w in model.get_layer(n).weights)
    features, head = models.split(model)  # Grad-CAM's split, at the backbone's last conv layer
    assert features.output.shape[1:] == model.get_layer(spec.last_conv_layer).output.shape[1:]
    assert head.output.shape[-1] == 7


def test_features_and_head_compose_to_the_model():
    model = models.build("densenet201", input_shape=(32, 32, 3), weights=None)
    features, head = models.split(model)
    images = _images(2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(features(images))), model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        models.split(model, "conv9")


def test_model_takes_raw_uint8_pixels_and_outputs_probabilities():
    model = models.build("baseline", weights=None, preprocess="unit", input_shape=(32, 32, 3))
    images = _images()
    from_uint8 = model.predict(images, verbose=0)
    from_float = model.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6)
    assert from_uint8.shape == (4, 7) and from_uint8.dtype == np.float32
    np.testing.assert_allclose(from_uint8.sum(axis=1), 1.0, rtol=1e-5)
    assert models.preprocess_of(model).weights == []  # preprocessing adds no parameters


@pytest.mark.parametrize(
    ("mode", "application"),
    [("caffe", "vgg16"), ("tf", "inception_v3"), ("torch", "densenet")],
)
def test_preprocess_modes_match_keras_applications(mode, application):
    images = _images(2).astype("float32")
    expected = getattr(keras.applications, application).preprocess_input(images.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Preprocess(mode)(images)), expected, rtol=1e-5, atol=1e-4)


def test_backbone_preprocess_is_the_registrys():
    model = models.build("vgg16", input_shape=(32, 32, 3), weights=None, preprocess="backbone")
    assert models.preprocess_of(model).mode == "caffe"
    assert models.preprocess_of(models.build("vgg16", (32, 32, 3), weights=None, preprocess="unit")).mode == "unit"


def test_standardize_holds_one_mean_and_std_in_its_config(tmp_path):
    images = _images(8)
    layer = Preprocess("standardize").adapt(images)
    assert layer.mean == pytest.approx(images.mean()) and layer.std == pytest.approx(images.std())
    out = keras.ops.convert_to_numpy(layer(images))
    assert abs(out.mean()) < 1e-4 and out.std() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(PreprocessError, match="adapt"):
        Preprocess("standardize")(images)
    with pytest.raises(PreprocessError, match="accepted values"):
        Preprocess("bgr")

    model = models.build("baseline", input_shape=(32, 32, 3), weights=None, preprocess=layer)
    assert models.param_counts(model)["total"] == models.param_counts(
        models.build("baseline", input_shape=(32, 32, 3), weights=None, preprocess="unit")
    )["total"]
    path = tmp_path / "baseline.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert models.preprocess_of(loaded).get_config()["mean"] == layer.mean
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5)
    models.set_trainable(loaded, "all")  # a reloaded model is still recognised


def _backbone(model):
    """Preprocessing to the backbone's last feature map: no Dropout, so training=True differs only by BN."""
    return keras.Model(model.input, model.get_layer(backbones.get(model.name).last_conv_layer).output)


def test_batch_norm_modes():
    model = models.build("inception_v3", input_shape=(75, 75, 3), weights=None)
    backbone = _backbone(model)
    images = _images(4, (75, 75, 3))
    batch_norms = [l for l in models.backbone_layers(model) if isinstance(l, keras.layers.BatchNormalization)]

    def run(training):
        return keras.ops.convert_to_numpy(backbone(images, training=training))

    models.set_trainable(model, "all", bn="frozen")  # Keras 3: inference mode, statistics kept
    before = [l.moving_mean.numpy() for l in batch_norms]
    np.testing.assert_allclose(run(True), run(False), rtol=1e-5, atol=1e-5)
    for bn, mean in zip(batch_norms, before):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)

    models.set_trainable(model, "head", bn="keras2_frozen")  # Keras 2.2.4: batch statistics, nothing updated
    assert models.batch_norm_state(model)["keras2_frozen"] == len(batch_norms)
    assert not np.allclose(run(True), run(False), atol=1e-3)
    for bn, mean in zip(batch_norms, before):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)
    assert not any(w.name in ("gamma", "beta") for w in model.trainable_weights)

    models.set_trainable(model, "head", bn="reset")  # the study's workaround
    assert models.batch_norm_state(model) == {"bn_layers": len(batch_norms), "trainable": len(batch_norms),
                                              "keras2_frozen": 0, "zeroed": len(batch_norms)}
    run(True)  # a training step rebuilds the statistics
    assert all(np.any(bn.moving_variance.numpy()) for bn in batch_norms)
    models.set_trainable(model, "top", bn="train")  # trainable, statistics kept
    assert models.batch_norm_state(model)["zeroed"] == 0 and all(l.trainable for l in batch_norms)


@pytest.mark.parametrize("number", ["03", "04", "05", "06", "07", "08"])
def test_batch_norm_actions_per_stage_are_the_studys(number):
    """Which layers train, and what BatchNorm does, at each stage of notebooks 03-08 under the study's recipe."""
    from skinlib import study

    row = study.get(number)
    recipe = recipes.get("study")
    model = models.build(row.model, input_shape=(75, 75, 3), weights=None)
    found = models.backbone_layers(model)
    batch_norms = [l for l in found if isinstance(l, keras.layers.BatchNormalization)]
    expected_bn = {"03": ["none", "none"], "04": ["reset", "train"], "05": ["reset", "train", "train"],
                   "06": ["reset", "train"], "07": ["keras2_frozen", "train"], "08": ["keras2_frozen", "train"]}
    assert [recipe.bn_for(stage) for stage in row.stages] == expected_bn[number]
    for stage in row.stages:
        for bn in batch_norms:  # statistics as ImageNet weights or training between the stages leave them
            bn.moving_mean.assign(np.ones(bn.moving_mean.shape, dtype="float32"))
        models.set_trainable(model, stage.layers, bn=recipe.bn_for(stage))
        state = models.batch_norm_state(model)
        others = [l for l in found if not isinstance(l, keras.layers.BatchNormalization) and l.weights]
        if stage.layers == "head":
            assert not any(l.trainable for l in others)
            assert state["zeroed"] == (len(batch_norms) if stage.bn == "reset" else 0)
            assert state["keras2_frozen"] == (len(batch_norms) if stage.bn == "keras2_frozen" else 0)
        else:  # the study never reset the statistics again: only what trains changed
            assert state["zeroed"] == 0 and state["keras2_frozen"] == 0
            assert state["trainable"] == len(batch_norms)
            assert all(l.trainable for l in others) == (stage.layers == "all")
            assert any(l.trainable for l in others)


def test_mixed_precision_keeps_float32_probabilities():
    model = models.build("baseline", (32, 32, 3), weights=None, preprocess="unit", mixed_precision=True)
    assert model.get_layer("head_dense").compute_dtype == "float16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.predict(_images(), verbose=0).dtype == np.float32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_weights_file_round_trip(tmp_path):
    model = models.build("baseline", input_shape=(32, 32, 3), weights=None, preprocess="unit")
    path = tmp_path / "baseline.weights.h5"
    model.save_weights(path)
    again = models.build("baseline", input_shape=(32, 32, 3), weights=path, preprocess="unit")
    images = _images()
    np.testing.assert_allclose(again.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)


def test_bad_input_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(KeyError, match="accepted values: baseline, vgg16, inception_v3"):
        models.build("resnet50", weights=None)
    with pytest.raises(ValueError, match="too small for 'inception_v3'.*at least 75"):
        models.build("inception_v3", input_shape=(64, 64, 3), weights=None)
    with pytest.raises(ValueError, match="3 RGB channels"):
        models.build("baseline", input_shape=(64, 64, 1), weights=None)
    with pytest.raises(ValueError, match="not found"):
        models.build("baseline", weights=tmp_path / "missing.weights.h5")
    with pytest.raises(ValueError, match="unknown preprocess"):
        models.build("baseline", weights=None, preprocess="imagenet")
    small = models.build("baseline", input_shape=(32, 32, 3), weights=None)
    small.save_weights(tmp_path / "small.weights.h5")
    with pytest.raises(ValueError, match="does not fit a 'baseline' model"):  # another input shape
        models.build("baseline", weights=tmp_path / "small.weights.h5")
    with pytest.raises(ValueError, match="does not fit a 'vgg16' model"):  # another architecture
        models.build("vgg16", input_shape=(32, 32, 3), weights=tmp_path / "small.weights.h5")
    with pytest.raises(ValueError, match="trains 'all' its layers"):
        models.set_trainable(small, "top")
    with pytest.raises(ValueError, match="unknown layers"):
        models.set_trainable(small, "bottom")
    with pytest.raises(ValueError, match="unknown bn mode"):
        models.set_trainable(small, "all", bn="seed")
    with pytest.raises(ValueError, match="has BatchNormalization layers"):
        models.set_trainable(models.build("densenet201", (32, 32, 3), weights=None), "head", bn="none")
    with pytest.raises(ValueError, match="not made by skinlib.models.build"):
        models.set_trainable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mine"), "all")


def test_registry_and_recipes_reject_unknown_names():
    assert backbones.names()[:5] == ("baseline", "vgg16", "inception_v3", "inception_resnet_v2", "densenet201")
    assert recipes.get("study").bn == "study" and recipes.get("corrected").bn == "frozen"
    with pytest.raises(ValueError, match="accepted values: study, corrected"):
        recipes.get("seed")
    with pytest.raises(ValueError, match="bn='bogus'.*'study', 'frozen', 'train'"):
        recipes.get("corrected").replace(bn="bogus")  # one vocabulary: skinlib.batchnorm.MODES, or the study's
    assert recipes.get("corrected").replace(bn="train").bn == "train"


def test_augmentation_acts_only_in_training():
    from skinlib import study

    images = _images(6, (16, 16, 3)).astype("float32")
    for spec in (study.get("02").augmentation, study.get("04").augmentation, "corrected"):
        pipeline = augment.pipeline(spec, (16, 16, 3), seed=1)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(pipeline(images, training=False)), images)
        assert not np.allclose(keras.ops.convert_to_numpy(pipeline(images, training=True)), images)
    identity = augment.pipeline("none", (16, 16, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(identity(images, training=True)), images)
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.pipeline("mixup")


@pytest.mark.parametrize("shape", [(8, 8, 3), (6, 10, 3)])
def test_random_rot90_gives_rotations_only(shape):
    images = _images(32, shape).astype("float32")
    out = keras.ops.convert_to_numpy(augment.RandomRot90(seed=3)(images, training=True))
    turns = (0, 1, 2, 3) if shape[0] == shape[1] else (0, 2)
    seen = set()
    for image, result in zip(images, out):
        matches = [k for k in turns if np.array_equal(np.rot90(image, k, axes=(0, 1)), result)]
        assert matches, "an output that is not a rotation of its input"
        seen.add(matches[0])
    assert seen == set(turns)
