"""The semdep network: paper architecture on DenseNet121, the α fusion of logits, the four training stages (frozen
parts do not move, trained ones do), training with ignored labels, and a .keras round trip."""
import dataclasses
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo import tasks as az_tasks
from affect_zoo.layers.attention import AlphaFusion, LabelAttention, SemanticDependency
from affect_zoo.metrics_multilabel import MaskedBinaryCrossentropy, MeanAveragePrecision
from affect_zoo.models import semdep
from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel

LABELS = 5
TASK = Task("labels", "multilabel", LABELS)
SHAPE = (64, 64, 3)


if "masked_bce" in az_tasks.LOSSES["multilabel"]:
    MASKED_TASK = Task("labels", "multilabel", LABELS, loss="masked_bce")
else:  # until tasks.py knows the loss: the same task with the masked loss and mAP plugged in
    @dataclasses.dataclass(frozen=True)
    class _MaskedTask(Task):
        def loss_object(self):
            return MaskedBinaryCrossentropy(reduction=None)

        def metric_objects(self):
            return [MeanAveragePrecision(self.size, name=f"{self.name}_map")]

    MASKED_TASK = _MaskedTask("labels", "multilabel", LABELS)


@functools.lru_cache(maxsize=None)
def small(attention="maps"):
    keras.utils.set_random_seed(0)
    # VGG16, not MobileNetV2: a random MobileNetV2's last stage is ~0 at 64 px, which leaves the attention's ReLUs
    # dead, so on the paper's path (no confidence conv) the attention would get no gradient at all.
    return semdep.build("vgg16", TASK, SHAPE, attention=attention)


def images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *SHAPE)).astype("float32")


def targets(n=4, seed=0, ignore=False):
    y = np.random.default_rng(seed).integers(0, 2, (n, LABELS)).astype("float32")
    if ignore:
        y[0, :2] = -1
    return y


def logit(p):
    p = np.clip(p.astype("float64"), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@pytest.mark.slow
def test_densenet121_paper_architecture_builds():
    net = semdep.build("densenet121", {"name": "voc", "kind": "multilabel", "size": 20}, SHAPE)
    by_name = {layer.name: layer for layer in net.layers}
    assert by_name["backbone_densenet121_stage4"].output.shape == (None, 2, 2, 1024)  # 14×14 at 448
    kernels = [tuple(by_name[n].kernel.shape) for n in ("attention_conv1", "attention_conv2", "attention_scores")]
    assert kernels == [(1, 1, 1024, 512), (3, 3, 512, 512), (1, 1, 512, 20)]
    assert isinstance(by_name["attention_labels"], LabelAttention)
    semantic = by_name["semantic_dependency"]
    assert isinstance(semantic, SemanticDependency) and semantic.filters == (256, 256, 512, 1024)
    assert isinstance(by_name["fusion_alpha"], AlphaFusion)
    assert float(by_name["fusion_alpha"].alpha) == pytest.approx(0.48)
    assert sorted(net.output) == ["voc", "voc_global", "voc_semantic"]
    assert by_name["attention_labels"].mode == "maps" and not by_name["attention_labels"].weights
    assert {semdep.part_of(layer.name) for layer in net.layers if layer.weights} == set(semdep.PARTS)


def np_spatial_softmax(z):
    b, h, w, c = z.shape
    flat = z.astype("float64").reshape(b, h * w, c)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(z.shape)


def test_default_path_feeds_the_attention_maps_to_the_semantic_part():
    """Xue et al. 2019, eq. 8: "M = F_cc(A, θ_cc), A ∈ R^{14×14×C}" — the input of SE and the four convs is the
    attention map A itself, A_c = softmax of the scores Z_c over the H·W positions (eq. 7), computed here in NumPy
    from the network's own scores."""
    net = small()
    probe = keras.Model(net.input, [net.get_layer("attention_scores").output,
                                    net.get_layer("semantic_dependency").input])
    z, semantic_input = (np.asarray(v) for v in probe(images()))
    np.testing.assert_allclose(semantic_input, np_spatial_softmax(z), rtol=1e-5, atol=1e-7)
    assert "labels_attention" not in net.output and semdep.attention_mode(net) == "maps"


def test_confidence_variant_is_an_option_with_its_own_attention_output():
    """The SRN-style variant (not the paper's): U = A ⊙ σ(S) with S a 1×1 conv of X, and y_att = Σ_p A(p)·S(p)."""
    net = small("confidence")
    assert sorted(net.output) == ["labels", "labels_attention", "labels_global", "labels_semantic"]
    layer = net.get_layer("attention_labels")
    probe = keras.Model(net.input, [net.get_layer("attention_scores").output, layer.input[1],
                                    net.get_layer("semantic_dependency").input, net.output["labels_attention"]])
    z, x, semantic_input, p_att = (np.asarray(v, "float64") for v in probe(images()))
    kernel, bias = layer.confidence.get_weights()
    s = x @ kernel[0, 0] + bias
    a = np_spatial_softmax(z)
    np.testing.assert_allclose(semantic_input, a / (1 + np.exp(-s)), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(logit(p_att), (a * s).sum(axis=(1, 2)), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match=r"attention must be one of \('maps', 'confidence'\)"):
        semdep.build("mobilenetv2", TASK, SHAPE, alpha=0.35, attention="srn")


def test_prediction_fuses_the_two_branches_logits():
    out = {k: v.numpy() for k, v in small()(images()).items()}
    assert all(v.shape == (4, LABELS) and np.all((v > 0) & (v < 1)) for v in out.values())
    np.testing.assert_allclose(logit(out["labels"]), 0.48 * logit(out["labels_global"])
                               + 0.52 * logit(out["labels_semantic"]), atol=1e-4)


def test_phase_flags_tasks_and_targets():
    net = small()
    assert semdep.phase_trainable(net, 1) == {"backbone": True, "global": True, "attention": False,
                                              "semantic": False, "fusion": False}
    assert semdep.phase_trainable(net, "semantic") == {"backbone": False, "global": False, "attention": False,
                                              "semantic": True, "fusion": False}
    assert all(semdep.phase_trainable(net, 4).values())
    assert semdep.phase_trainable(net, "attention") == {"backbone": False, "global": False, "attention": True,
                                                        "semantic": True, "fusion": False}
    assert semdep.phase_trainable(small("confidence"), "attention") == {
        "backbone": False, "global": False, "attention": True, "semantic": False, "fusion": False}
    assert [t.name for p in (1, 2, 3, 4) for t in semdep.phase_tasks(TASK, p)] == [
        "labels_global", "labels_semantic", "labels_semantic", "labels"]
    assert [t.name for p in (1, 2, 3, 4) for t in semdep.phase_tasks(TASK, p, "confidence")] == [
        "labels_global", "labels_attention", "labels_semantic", "labels"]
    assert semdep.phase_targets({"labels": 1, "other": 2}, "labels", "attention") == {"labels_semantic": 1,
                                                                                      "other": 2}
    assert semdep.phase_targets({"labels": 1}, "labels", "attention", "confidence") == {"labels_attention": 1}
    for bad in (5, "heads"):
        with pytest.raises(ValueError, match=r"phase must be one of \[1, 2, 3, 4\] or \['backbone'"):
            semdep.phase_trainable(net, bad)
    with pytest.raises(ValueError, match=r"one multilabel task"):
        semdep.build("mobilenetv2", [Task("a", "binary")], SHAPE, alpha=0.35)


def snapshot(net):
    """{part: [arrays]} of every variable (trainable or not) of each part."""
    out = {}
    for layer in net.layers:
        part = semdep.part_of(layer.name)
        if part:
            out.setdefault(part, []).extend(np.array(w) for w in layer.weights)
    return out


@pytest.mark.parametrize("phase, attention", [(2, "maps"), (3, "maps"), (2, "confidence")])
def test_frozen_parts_do_not_move_in_their_stage(phase, attention):
    """All outputs are trained, so every part gets a gradient: only the phase's parts may change (frozen
    BatchNormalization statistics included)."""
    net = small(attention)
    semdep.phase_trainable(net, phase)
    model = MultiTaskModel(net, tasks=[dataclasses.replace(TASK, name=n) for n in net.output])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)  # eager: no minute-long trace on CPU
    before = snapshot(net)
    x, y = images(8, seed=phase), targets(8, seed=phase)
    model.fit(x, {n: y for n in net.output}, batch_size=4, epochs=1, verbose=0)
    after = snapshot(net)
    for part in semdep.PARTS:
        changed = any(not np.array_equal(b, a) for b, a in zip(before[part], after[part]))
        assert changed == (part in semdep.phase_parts(phase, attention)), (phase, part)
    semdep.phase_trainable(net, 4)


@pytest.mark.slow
def test_train_with_ignored_labels_then_save_and_load(tmp_path):
    """Phase 4 in graph mode on targets with ignored (-1) entries, then a .keras round trip of the network.
    (VGG16: tracing MobileNetV2's train step takes most of a minute on a shared CPU.)"""
    keras.utils.set_random_seed(1)
    net = semdep.build("vgg16", MASKED_TASK, SHAPE, rescale_attention=True)
    semdep.phase_trainable(net, 4)
    model = MultiTaskModel(net, tasks=[MASKED_TASK])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = tf.data.Dataset.from_tensor_slices((images(8), {"labels": targets(8, ignore=True)})).batch(4)
    history = model.fit(ds, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and ("labels_map" in history or "labels_auc" in history)
    path = tmp_path / "semdep.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    x = images(2, seed=5)
    expected, got = net(x), loaded(x)
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
