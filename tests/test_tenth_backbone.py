"""A backbone outside the study is one record in skinlib.backbones: the whole path works with nothing else added."""

import numpy as np
import pytest

from skinlib import augment, backbones, evaluate, export, gradcam, models, recipes, study, train


@pytest.mark.slow
def test_efficientnetv2_b0_builds_trains_evaluates_explains_and_exports(tmp_path):
    spec = backbones.get("efficientnetv2_b0")
    assert spec.key not in {step.model for step in study.STEPS}  # no notebook, no study row: only its record
    rng = np.random.default_rng(0)
    y = np.arange(28) % 7
    x = (rng.integers(0, 40, (28, 32, 32, 3)) + (y * 30)[:, None, None, None]).astype("uint8")
    data = {"train": (x, y), "val": (x, y)}
    recipe = recipes.get("corrected")

    model = models.build("efficientnetv2_b0", input_shape=(32, 32, 3), weights=None, preprocess="backbone")
    assert models.preprocess_of(model).mode == spec.preprocess
    augmentation = augment.pipeline("corrected", (32, 32, 3), seed=0)
    head = study.Stage("head", 1, 1e-3, False, "frozen")
    top = study.Stage("top", 1, 1e-4, False, "frozen")
    models.set_trainable(model, "head", bn=recipe.bn_for(head))
    history = train.fit(model, data, recipe, head, batch_size=14, augmentation=augmentation, out_dir=tmp_path,
                        verbose=0, run_eagerly=True)
    trained_head = models.param_counts(model)["trainable"]
    models.set_trainable(model, "top", bn=recipe.bn_for(top))
    assert models.param_counts(model)["trainable"] > trained_head  # block6a onwards joined the head
    history = train.fit(model, data, recipe, top, batch_size=14, augmentation=augmentation, out_dir=tmp_path,
                        history=history, verbose=0, run_eagerly=True)
    assert history["layers"].tolist() == ["head", "top"]

    proba = evaluate.predict(model, x)
    report = evaluate.report(y, proba, groups=np.arange(len(y)) // 2)
    assert report.n == 28 and report.n_groups == 14

    heat = gradcam.gradcam(model, x[:2])
    assert gradcam.GradCAM(model).layer.name == spec.last_conv_layer
    assert heat.shape == (2, 32, 32) and np.isfinite(heat).all()

    deployed = export.load(export.export(model, tmp_path / "effnet.keras", recipe=recipe))
    big = np.repeat(np.repeat(x[:2], 3, axis=1), 3, axis=2)  # any size in
    np.testing.assert_allclose(deployed.predict(big, verbose=0).sum(axis=1), 1.0, rtol=1e-5)
