"""The two-branch architectures: structure, independence of branches, training with logging, save/load."""
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo.layers import NDDR, AdaptiveFeatureInteraction, CrossStitch
from affect_zoo.models import copy_weights_by_name, multitask
from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel

TASKS = [Task("va", "regression", 2, branch=0, target_range=(1, 9)),
         Task("emotion", "distribution", 7, branch=1, circle="emotion6")]
SHAPE = (32, 32, 3)


def build(architecture, **options):
    keras.utils.set_random_seed(0)
    return multitask.build(architecture, "mobilenetv2", TASKS, SHAPE, alpha=0.35, **options)


@functools.lru_cache(maxsize=None)
def built(architecture):
    """One default build per architecture for the tests that only read it (building is the slow part)."""
    return build(architecture)


def images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *SHAPE)).astype("float32")


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


@pytest.mark.parametrize("architecture, kind", [("afi", AdaptiveFeatureInteraction), ("cross_stitch", CrossStitch),
                                                ("nddr", NDDR)])
def test_an_interaction_after_every_stage(architecture, kind):
    model = built(architecture)
    assert [layer.name for layer in layers_of(model, kind)] == [f"interaction_{i}" for i in (1, 2, 3, 4)]
    out = model(images())
    assert out["va"].shape == (4, 2) and out["emotion"].shape == (4, 7)
    np.testing.assert_allclose(out["emotion"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_site_ablations():
    assert multitask.interaction_sites(4, "shallow") == [1, 2]
    assert multitask.interaction_sites(4, "deep") == [3, 4]
    assert multitask.interaction_sites(5, "shallow") == [1, 2]
    assert multitask.interaction_sites(5, "deep") == [3, 4, 5]
    assert multitask.interaction_sites(5, [5, 1]) == [1, 5]
    model = build("afi", stages="deep", pooling="max")
    afis = layers_of(model, AdaptiveFeatureInteraction)
    assert [a.name for a in afis] == ["interaction_3", "interaction_4"]
    assert all(a.pooling == "max" for a in afis)
    with pytest.raises(ValueError, match=r"out of range: the backbone has stages 1..4"):
        multitask.interaction_sites(4, [0, 2])


def test_depth_keeps_the_first_stages():
    model = multitask.build("afi", "vgg16", TASKS, SHAPE, depth=3, stages="all")
    assert [a.name for a in layers_of(model, AdaptiveFeatureInteraction)] == [f"interaction_{i}" for i in (1, 2, 3)]
    assert model.get_layer("a_vgg16_stage3").output.shape[-1] == 256
    assert not any(layer.name.endswith("stage4") for layer in model.layers)
    with pytest.raises(ValueError, match="depth must be in 1..5"):
        multitask.build("single", "vgg16", TASKS, SHAPE, depth=6)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_head_norm_standardises_the_pooled_features(norm):
    model = build("hard_share", head_norm=norm)
    pooled = keras.Model(model.input, [model.get_layer("shared_pool").output,
                                       model.get_layer("shared_head_norm").output])
    raw, normed = (np.asarray(t) for t in pooled(images(8) * 1.0, training=True))
    axis = 0 if norm == "batch" else 1
    expected = (raw - raw.mean(axis, keepdims=True)) / np.sqrt(raw.var(axis, keepdims=True) + 1e-3)
    np.testing.assert_allclose(normed, expected, rtol=1e-3, atol=1e-3)
    assert "shared_head_norm" not in [layer.name for layer in build("hard_share").layers]
    with pytest.raises(ValueError, match="head_norm must be one of"):
        build("hard_share", head_norm="group")


def test_regression_head_starts_near_the_middle_of_its_range():
    features = keras.Input((256,))
    head = keras.Model(features, TASKS[0].head(features))
    out = np.asarray(head(np.random.default_rng(0).standard_normal((512, 256)).astype("float32")))
    assert abs(out.mean() - 5.0) < 0.1
    assert out.std() < 0.6  # Glorot would give ~5.6 label units on these unit-variance features


def cross_gradient(model):
    """Gradient of the branch-0 task's output w.r.t. the branch-1 backbone's variables."""
    e_vars = [v for v in model.trainable_variables if v.path.startswith("e_")]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(images(), training=True)["va"])
    grads = tape.gradient(loss, e_vars)
    return sum(0.0 if g is None else float(tf.reduce_sum(tf.abs(g))) for g in grads), len(e_vars)


def test_single_branches_do_not_interact_and_afi_branches_do():
    single, n = cross_gradient(built("single"))
    assert n > 0 and single == 0.0
    assert cross_gradient(built("afi"))[0] > 0.0


def test_hard_share_has_one_trunk():
    model = built("hard_share")
    heads = ("va_linear/", "emotion_circle_head/")
    trunk = [v.path for v in model.trainable_variables if not v.path.startswith(heads)]
    assert trunk and all(path.startswith("shared_") for path in trunk)
    assert model.count_params() < built("single").count_params()


def test_bad_architecture_backbone_and_branches():
    with pytest.raises(ValueError, match="unknown architecture 'mtl'"):
        multitask.build("mtl", "mobilenetv2", TASKS, SHAPE)
    with pytest.raises(ValueError, match="resnet9000"):
        multitask.build("afi", "resnet9000", TASKS, SHAPE)
    with pytest.raises(ValueError, match="afi needs tasks on both branches"):
        multitask.build("afi", "mobilenetv2", [TASKS[1]], SHAPE, alpha=0.35)


def test_single_task_weights_initialise_afi_branches():
    single, afi = built("single"), build("afi")
    copied = copy_weights_by_name(single, afi)
    assert any(name.startswith("a_") for name in copied) and any(name.startswith("e_") for name in copied)
    assert "va_linear" in copied and "emotion_circle_head" in copied
    by_path = {v.path: v.numpy() for v in single.weights}
    shared = [v for v in afi.weights if v.path in by_path and v.path.startswith(("a_", "e_"))]
    assert shared and all(np.array_equal(v.numpy(), by_path[v.path]) for v in shared)


@pytest.mark.slow
def test_afi_trains_logs_site_statistics_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    # VGG16 (no BatchNormalization) traces its train step several times faster than MobileNetV2 on CPU.
    network = multitask.build("afi", "vgg16", TASKS, SHAPE, recalibrate=True, stages=[2, 3, 4, 5])
    model = MultiTaskModel(network, tasks=TASKS, balancer="gradnorm")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(1)
    x = images(8)
    y = {"va": rng.uniform(1, 9, (8, 2)).astype("float32"),
         "emotion": rng.dirichlet(np.ones(7), 8).astype("float32")}
    logs = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    for site in (2, 3, 4, 5):
        ratio = logs[f"interaction_{site}_grad_ratio_a"][-1]
        w_self = logs[f"interaction_{site}_w_self_e"][-1]
        assert np.isfinite(ratio) and ratio > 0 and 0 < w_self < 1
    assert logs["weight_va"][-1] + logs["weight_emotion"][-1] == pytest.approx(2.0, rel=1e-4)
    path = tmp_path / "afi.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for ours, theirs in zip(model.network.get_weights(), loaded.network.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for name, value in model.predict(x, verbose=0).items():
        # The same weights; oneDNN may sum in another order on another call (outputs here reach ~300).
        np.testing.assert_allclose(loaded.predict(x, verbose=0)[name], value, rtol=1e-5, atol=1e-5)
    assert loaded.network.get_layer("interaction_2").recalibrate


def test_gradnorm_w_is_the_last_shared_conv_kernel():
    """GradNorm's W (Chen et al. 2018: "the last shared layer of weights") is a conv kernel, never a BatchNorm's
    gamma/beta or a mixing module's weights. By hand from Keras' MobileNetV2: its last conv is ``Conv_1`` (the
    1×1 conv to 1280·α channels, before ``Conv_1_bn``), and stage 2 (ending at ``block_5_add``) ends with the
    ``block_5_project`` conv."""
    hard = MultiTaskModel(built("hard_share"), tasks=TASKS, balancer="gradnorm")
    assert [v.path for v in hard.balancer_variables()] == ["shared_Conv_1/kernel"]
    trunk = [v.path for v in built("hard_share").trainable_variables if v.path.startswith("shared_")]
    assert sorted(v.path for v in hard.shared_variables()) == sorted(trunk)
    # AFI mixes the branches after every stage: each branch's last conv feeds both tasks, so W is the pair
    afi = MultiTaskModel(built("afi"), tasks=TASKS, balancer="gradnorm")
    assert [v.path for v in afi.balancer_variables()] == ["a_Conv_1/kernel", "e_Conv_1/kernel"]
    heads = ("va_linear/", "emotion_circle_head/")
    assert sorted(v.path for v in afi.shared_variables()) == sorted(
        v.path for v in built("afi").trainable_variables if not v.path.startswith(heads))
    # only the stages up to the last interaction site are shared
    shallow = MultiTaskModel(build("afi", stages="shallow"), tasks=TASKS, balancer="pcgrad")
    paths = {v.path for v in shallow.shared_variables()}
    assert {"a_block_5_project/kernel", "e_block_5_project/kernel", "interaction_2/avg_kernel"} <= paths
    assert not {"a_block_6_project/kernel", "a_Conv_1/kernel"} & paths
    assert [v.path for v in shallow.last_shared_kernels()] == ["a_block_5_project/kernel",
                                                               "e_block_5_project/kernel"]


def test_balancers_that_need_sharing_refuse_single_with_a_clear_error():
    with pytest.raises(ValueError, match="GradNorm needs the last shared convolution .* no convolution receives"):
        MultiTaskModel(built("single"), tasks=TASKS, balancer="gradnorm")
    with pytest.raises(ValueError, match="PCGrad needs shared parameters; .* no parameter receives two tasks"):
        MultiTaskModel(built("single"), tasks=TASKS, balancer="pcgrad")
    MultiTaskModel(built("single"), tasks=TASKS, balancer="uncertainty")  # weighting balancers need none
