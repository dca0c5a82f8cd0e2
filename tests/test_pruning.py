"""Structured pruning by channel groups: every group shrinks together, the thinner model is
exactly the original without those channels, and the backbones people deploy (MobileNet v1,
v2 and v3 with hard-swish and squeeze-excite, EfficientNet-Lite0, VGG16) all go through it.
Random weights are enough for the graph and equivalence tests (they test the slicing, not
accuracy); the accuracy-latency curve is tools/bench_pruning.py's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli

from edgecnn.errors import BadInput

ARCHS = {
    "cnn_mnist": ((28, 28, 1), {}),
    "mobilenet": ((96, 96, 3), {"weights": "none", "alpha": 0.5}),
    "mobilenet_v2": ((96, 96, 3), {"weights": "none", "alpha": 0.35}),
    "mobilenet_v3_small": ((96, 96, 3), {"weights": "none", "alpha": 0.75}),
    "efficientnet_lite0": ((96, 96, 3), {"weights": "none"}),
    "vgg16": ((32, 32, 3), {"weights": "none"}),
}


def model_of(arch: str, seed: int = 0):
    import keras

    from edgecnn.zoo import build_model

    keras.utils.set_random_seed(seed)
    shape, opts = ARCHS[arch]
    model = build_model(arch, shape, 10, **opts)
    for layer in model._flatten_layers():  # BatchNorm statistics that are not the identity
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            rng = np.random.default_rng(abs(hash(layer.name)) % 2**32)
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.1, n),
                    rng.normal(0, 0.1, n),
                    rng.uniform(0.5, 2, n),
                ]
            )
    return model


def images(model, n: int = 4) -> np.ndarray:
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    return np.random.default_rng(1).uniform(0, 255, (n, *shape)).astype(np.float32)


def zero_removed_channels(g, plan) -> None:
    """Make the channels the plan removes exactly zero in the original model: producers'
    filters and biases, and the BatchNorm/depthwise members' scales and offsets."""
    for gid, keep in plan.keep.items():
        group = g.groups[gid]
        gone = np.setdiff1d(np.arange(group.size), keep)
        for name in group.producers:
            layer = g.layers[name]
            w = layer.get_weights()
            k = 1 if type(layer).__name__ == "SeparableConv2D" else 0
            w[k][..., gone] = 0
            for i in range(k + 1, len(w)):
                w[i][gone] = 0
            layer.set_weights(w)
        for name in group.members:
            layer = g.layers[name]
            kind = type(layer).__name__
            if kind == "BatchNormalization":
                gamma, beta, mean, var = layer.get_weights()
                gamma[gone], beta[gone] = 0, 0
                layer.set_weights([gamma, beta, mean, var])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_pruned_model_is_the_original_without_those_channels(arch):
    """Zero the channels the plan removes in the original; the rebuilt model, which does not
    have them at all, gives the same outputs: every consumer, depthwise convolution, residual
    add, squeeze-excite multiply and Flatten->Dense row was sliced consistently."""
    from edgecnn.optimize.structured import apply_plan, plan_pruning

    model = model_of(arch)
    g, plan = plan_pruning(model, 0.5)
    assert plan.keep, "nothing was pruned"
    zero_removed_channels(g, plan)
    thin = apply_plan(model, g, plan)
    x = images(model)
    want, got = model.predict(x, verbose=0), thin.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    assert thin.count_params() < 0.7 * model.count_params()


def constant_channels_net():
    """Conv3x3 -> BN -> ReLU -> Conv1x1 (no bias) -> BN -> ReLU -> Conv1x1 -> BN -> ReLU ->
    Flatten -> Dense: the pruned groups' consumers are a bias-less 1x1 conv and a Dense."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = inp
    for i, (width, k, bias) in enumerate(((16, 3, True), (8, 1, False), (16, 1, True))):
        x = layers.Conv2D(width, k, padding="same", use_bias=bias, name=f"c{i}")(x)
        x = layers.ReLU()(layers.BatchNormalization(name=f"bn{i}")(x))
    out = layers.Dense(10, name="fc")(layers.Flatten()(x))
    model = keras.Model(inp, out)
    for i in range(3):
        bn = model.get_layer(f"bn{i}")
        n = bn.gamma.shape[0]
        bn.set_weights([np.ones(n), np.full(n, 0.5), np.zeros(n), np.ones(n)])
    return model


def test_mean_replacement_keeps_the_outputs_when_removed_channels_are_constant():
    """Channels whose filters are zero still output a constant (BatchNorm's shift through the
    ReLU). Without mean replacement, removing them changes the outputs; with it, their mean
    moves into the consumers' biases (one is created for the bias-less conv, and the Dense
    after Flatten gets one row per position) and the outputs stay the same."""
    from edgecnn.optimize.structured import apply_plan, plan_pruning

    model = constant_channels_net()
    x = np.random.default_rng(0).uniform(0, 1, (32, 8, 8, 3)).astype(np.float32)
    g, plan = plan_pruning(model, 0.5)
    assert sorted(len(k) for k in plan.keep.values()) == [8, 8]
    for gid, keep in plan.keep.items():
        gone = np.setdiff1d(np.arange(g.groups[gid].size), keep)
        for name in g.groups[gid].producers:
            w = g.layers[name].get_weights()
            w[0][..., gone] = 0
            w[1:] = [b * np.isin(np.arange(len(b)), keep) for b in w[1:]]
            g.layers[name].set_weights(w)
    want = model.predict(x, verbose=0)
    data = (x, np.zeros(len(x), dtype=np.int64))
    g2, plain = plan_pruning(model, 0.5, data=data, compensate=False)
    g3, kept = plan_pruning(model, 0.5, data=data)
    assert set(kept.input_means) == {"c1", "fc"}
    assert all(np.array_equal(kept.keep[k], plan.keep[k]) for k in plan.keep)
    without = apply_plan(model, g2, plain).predict(x, verbose=0)
    thin = apply_plan(model, g3, kept)
    assert np.abs(without - want).max() > 0.1
    np.testing.assert_allclose(thin.predict(x, verbose=0), want, atol=1e-4, rtol=1e-4)
    assert thin.get_layer("c1").use_bias


@pytest.mark.parametrize("arch", list(ARCHS))
def test_mean_replacement_runs_on_every_backbone(arch):
    """With calibration data every backbone gets its consumers' input means (1x1 and 3x3
    convolutions, squeeze-excite, the Dense head) and the rebuilt model runs."""
    from edgecnn.optimize.structured import apply_plan, plan_pruning

    model = model_of(arch)
    x = images(model, 8)
    g, plan = plan_pruning(model, 0.5, data=(x, np.zeros(8, dtype=np.int64)))
    assert plan.input_means and all(np.isfinite(m).all() for m in plan.input_means.values())
    assert apply_plan(model, g, plan).predict(x, verbose=0).shape == (8, 10)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "efficientnet_lite0", "mobilenet_v3_small"])
def test_every_group_shrinks_together(arch):
    """Producers, per-channel members and consumers of each pruned group all end up with the
    kept channel count (a multiple of 8), residual chains included."""
    from edgecnn.optimize.structured import apply_plan, plan_pruning

    model = model_of(arch)
    g, plan = plan_pruning(model, 0.5)
    thin = apply_plan(model, g, plan)
    layers = {lay.name: lay for lay in thin.layers}
    residual = 0
    for gid, keep in plan.keep.items():
        group = g.groups[gid]
        assert len(keep) % 8 == 0 and len(keep) < group.size
        for name in group.producers:
            lay = layers[name]
            assert (getattr(lay, "filters", None) or lay.units) == len(keep), name
        for name in group.members:
            shape = layers[name].get_weights()[0].shape
            assert len(keep) in shape, (name, shape)
        residual += len(group.producers) > 1
    assert residual > 0 or arch == "mobilenet_v3_small", "no residual chain was pruned"


def test_half_pruned_mobilenet_v2_has_about_half_the_macs_residuals_included():
    from edgecnn.optimize.depgraph import analyze
    from edgecnn.optimize.structured import prune_structured
    from edgecnn.zoo.cost import model_cost

    model = model_of("mobilenet_v2")
    thin, plan = prune_structured(model, 0.5)
    ratio = model_cost(thin)["total_macs"] / model_cost(model)["total_macs"]
    print("MACs ratio", ratio)
    assert 0.25 < ratio < 0.55
    ties = [g for g in analyze(model).prunable() if len(g.producers) > 1]
    assert ties and any(
        set(g.producers) <= {p for row in plan.rows for p in row["producers"]} for g in ties
    )
    before = {
        lay.name: int(lay.output.shape[-1])
        for lay in model._flatten_layers()
        if type(lay).__name__ == "Add"
    }
    after = {
        lay.name: int(lay.output.shape[-1]) for lay in thin.layers if type(lay).__name__ == "Add"
    }
    assert before and set(after) == set(before)
    assert any(after[n] < before[n] for n in before), (before, after)  # residual chains thinned too


def test_importance_criteria_all_run_and_differ():
    from edgecnn.optimize.structured import plan_pruning

    model = model_of("cnn_mnist")
    x = images(model, 64)
    y = np.arange(64) % 10
    keeps = {
        imp: plan_pruning(model, 0.5, importance=imp, data=(x, y))[1].keep
        for imp in ("l1", "l2", "bn", "taylor")
    }
    for keep in keeps.values():
        assert keep and all(len(k) % 8 == 0 for k in keep.values())
    assert any(not np.array_equal(keeps["l1"][g], keeps["taylor"][g]) for g in keeps["l1"])


def test_the_build_default_importance_depends_on_batchnorm():
    """auto (the build's default): taylor where BatchNorm rescales the channels, l1 for the
    seed CNNs, which have none; a named criterion is kept."""
    from edgecnn.build.config import BuildConfig
    from edgecnn.optimize.structured import resolve_importance

    assert BuildConfig().prune_importance == "auto"
    assert resolve_importance("auto", model_of("cnn_mnist")) == "l1"
    assert resolve_importance("auto", model_of("efficientnet_lite0")) == "taylor"
    assert resolve_importance("l2", model_of("efficientnet_lite0")) == "l2"
    with pytest.raises(BadInput, match="auto, l1"):
        BuildConfig(prune_importance="l3").validated()


def test_unknown_layers_are_left_alone_and_named():
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, name="c1")(inp)
    x = keras.layers.LayerNormalization(name="odd_norm")(x)
    x = keras.layers.Conv2D(32, 3, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(4, name="out")(x))
    from edgecnn.optimize.structured import prune_structured

    thin, plan = prune_structured(model, 0.5)
    assert "c1" in plan.left_alone and "odd_norm" in plan.left_alone["c1"]
    assert thin.get_layer("c1").filters == 32 and thin.get_layer("c2").filters == 16


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_ratios(ratio):
    from edgecnn.optimize.structured import plan_pruning

    with pytest.raises(BadInput, match=r"\[0, 1\)"):
        plan_pruning(model_of("cnn_mnist"), ratio)


def test_plan_naming_a_missing_layer_is_refused():
    from edgecnn.optimize.structured import plan_pruning

    with pytest.raises(BadInput, match="layers the model does not have: no_such_layer"):
        plan_pruning(model_of("cnn_mnist"), 0.3, per_layer={"no_such_layer": 0.5})


def test_convert_uses_it_and_records_the_plan(digits_cnn, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"conv2": 0.75}))
    out = tmp_path / "b"
    r = run_cli("convert", str(digits_cnn), "--data", "digits", "--out", str(out), "--prune-filters", "0.5",
                "--prune-plan", str(plan), "--prune-steps", "2", "--fine-tune-epochs", "1", "--formats", "tflite",
                "--prune-distill", "0.5",
                "--precision", "int8", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    steps = m["model"]["optimization"]["pruning"]
    assert len(steps) == 2 and steps[0]["per_layer"] and steps[0]["multiple"] == 8
    assert all("val_accuracy_after_finetune" in s for s in steps)
    assert m["model"]["optimization"]["distill"] == 0.5
    import keras

    thin = keras.saving.load_model(out / "model.keras")  # saved without the distillation loss
    assert (
        thin.get_layer("conv2").filters < thin.get_layer("conv1").filters * 2
    )  # conv2 went further
    bad = run_cli(
        "convert",
        str(digits_cnn),
        "--data",
        "digits",
        "--out",
        str(tmp_path / "c"),
        "--prune-filters",
        "1.2",
    )
    assert bad.returncode == 2 and "[0, 1)" in bad.stderr and not (tmp_path / "c").exists()
    plan.write_text(json.dumps({"nope": 0.5}))
    bad = run_cli("convert", str(digits_cnn), "--data", "digits", "--out", str(tmp_path / "d"), "--prune-filters", "0.5",
                  "--prune-plan", str(plan))  # fmt: skip
    assert bad.returncode == 2 and "nope" in bad.stderr and not (tmp_path / "d").exists()


def test_distillation_loss_is_cross_entropy_plus_the_teachers_kl():
    import keras

    from edgecnn.optimize.distill import distillation_loss, packed_targets

    rng = np.random.default_rng(0)
    student = rng.dirichlet(np.ones(5), 8).astype(np.float32)
    teacher = rng.dirichlet(np.ones(5), 8).astype(np.float32)
    y = rng.integers(0, 5, 8)
    packed = packed_targets(y, teacher)

    def mean_loss(alpha: float, target: np.ndarray) -> float:
        loss = distillation_loss(5, alpha, 4.0, from_logits=False)
        return float(keras.ops.mean(loss(packed_targets(y, target), student)))

    ce = float(-np.log(student[np.arange(8), y]).mean())
    assert mean_loss(0.0, teacher) == pytest.approx(ce, rel=1e-5)  # labels only
    assert mean_loss(1.0, student) == pytest.approx(0.0, abs=1e-5)  # the student is the teacher
    assert mean_loss(1.0, teacher) > 1e-3 and packed.shape == (8, 10)
    bad = run_cli("convert", "m.keras", "--data", "digits", "--out", "o", "--prune-distill", "1.5")
    assert bad.returncode == 2 and "distillation weight must be in [0, 1]" in bad.stderr


def test_sensitivity_scan_table_and_plot(digits_cnn, tmp_path):
    png = tmp_path / "scan.png"
    r = run_cli("inspect", str(digits_cnn), "--prune-scan", "--data", "digits", "--scan-ratios", "0.5,0.75",
                "--scan-plot", str(png), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    scan = json.loads(r.stdout)["prune_scan"]
    assert [row["group"] for row in scan["rows"]] == ["conv1", "conv2", "fc1"]
    assert all({"drop@0.5", "drop@0.75"} <= set(row) for row in scan["rows"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "predictions" in scan["left_alone"]
    table = run_cli(
        "inspect", str(digits_cnn), "--prune-scan", "--data", "digits", "--scan-ratios", "0.5"
    )
    assert "pruning sensitivity" in table.stdout and "drop@0.5" in table.stdout
    bad = run_cli("inspect", str(digits_cnn), "--prune-scan")
    assert bad.returncode == 2 and "needs --data" in bad.stderr
