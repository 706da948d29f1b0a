"""Task kinds as plug-ins: one class per kind owns everything that depends on the kind, and its named outputs are
one list read alike by ``predict`` (NumPy) and the export signature (graph)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo import export, tasks
from affect_zoo.tasks import Output, Task, TaskKind, register_kind
from affect_zoo.tasks import base as kinds_base

BUILT_IN = [
    Task("style", "classification", 3, labels=("a", "b", "c")),
    Task("emotion", "distribution", 8, circle="mikels8"),
    Task("plain", "distribution", 4),
    Task("va", "regression", 2, labels=("valence", "arousal"), target_range=(1, 9)),
    Task("score", "regression", 1),
    Task("good", "binary"),
    Task("tags", "multilabel", 5),
]


@pytest.fixture
def ordinal_kind():
    """A kind added the way a user adds one: one class, one decorator; removed again after the test."""

    @register_kind
    class Ordinal(TaskKind):
        name = "ordinal"
        losses = ("mse",)
        activation = "sigmoid"

        def loss_object(self, task):
            return keras.losses.MeanSquaredError(reduction=None)

        def loss_inputs(self, task, target, prediction):
            target, prediction = super().loss_inputs(task, target, prediction)
            return target / (task.size + 1), prediction

        def outputs(self, task):
            return [Output(f"{task.name}_rank", "float32", "(batch,)", "expected rank, 0 to size")]

        def output_values(self, task, y, ops, readable=False):
            return {f"{task.name}_rank": ops.flat(y[:, :1]) * task.size}

    yield Ordinal
    kinds_base._KINDS.pop("ordinal")


def outputs_of(task, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.random((batch, task.size)).astype(np.float32)
    if task.kind in ("classification", "distribution"):
        raw /= raw.sum(-1, keepdims=True)
    return raw


@pytest.mark.parametrize("task", BUILT_IN, ids=lambda t: t.name)
def test_numpy_and_graph_outputs_have_the_same_names_and_values(task):
    raw = outputs_of(task)
    host = task.handler.output_values(task, raw, tasks.NumpyOps)
    graph = {k: v.numpy() for k, v in export.named_outputs({task.name: tf.constant(raw)}, [task]).items()}
    assert list(host) == list(graph) == [o.name for o in task.outputs()]
    for name in host:
        np.testing.assert_allclose(np.asarray(host[name], np.float64), graph[name], atol=1e-6, err_msg=name)


@pytest.mark.parametrize("task", BUILT_IN, ids=lambda t: t.name)
def test_decoding_the_named_outputs_gives_back_the_network_output(task):
    raw = outputs_of(task)
    named = tasks.named_outputs([task], {task.name: raw})
    np.testing.assert_allclose(export.decode_outputs(named, [task])[task.name], raw, atol=1e-6)


def test_predict_keys_are_the_task_outputs_plus_each_task_raw_output():
    raw = {t.name: outputs_of(t) for t in BUILT_IN}
    named = tasks.named_outputs(BUILT_IN, raw)
    assert set(named) == set(export.output_names(BUILT_IN)) | {t.name for t in BUILT_IN}
    assert list(named["style_label"]) == list(np.asarray(["a", "b", "c"])[raw["style"].argmax(-1)])
    np.testing.assert_allclose(named["valence"], raw["va"][:, 0])
    assert named["good_prob"].shape == (3,) and named["good"].shape == (3, 1)


def test_a_new_kind_is_one_class_and_one_registration(ordinal_kind):
    task = Task("stars", "ordinal", 4)
    assert "ordinal" in tasks.KINDS and task.loss == "mse" and tasks.LOSSES["ordinal"] == ("mse",)
    features = keras.Input((6,))
    network = keras.Model(features, {"stars": task.head(features)})
    y = network(np.ones((2, 6), np.float32))["stars"]
    assert y.shape == (2, 4) and network.layers[-1].name == "stars"
    target, prediction = task.loss_inputs(np.full((2, 4), 5.0), y)
    np.testing.assert_allclose(target, 1.0)  # 5 / (4 + 1)
    raw = np.array([[0.25, 0, 0, 0], [0.5, 0, 0, 0]], np.float32)
    assert export.output_names([task]) == {"stars_rank": "stars: float32 (batch,) expected rank, 0 to size"}
    np.testing.assert_allclose(tasks.named_outputs([task], {"stars": raw})["stars_rank"], [1.0, 2.0])
    graph = export.named_outputs({"stars": tf.constant(raw)}, [task])
    np.testing.assert_allclose(graph["stars_rank"].numpy(), [1.0, 2.0])
    task.check_target(tf.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"targets\['stars'\] has shape \(2, 3\).*ordinal task of size 4"):
        task.check_target(tf.zeros((2, 3)))


def test_registration_refuses_a_taken_name_and_what_is_not_a_kind():
    class Other(TaskKind):
        name = "binary"
        losses = ("bce",)

    with pytest.raises(ValueError, match="'binary' is already registered by Binary"):
        register_kind(Other)
    with pytest.raises(TypeError, match="TaskKind subclass"):
        register_kind(dict)
    with pytest.raises(ValueError, match=r"task 'x': unknown kind 'ordinal'; known kinds: .*multilabel"):
        Task("x", "ordinal", 2)


def test_kind_validation_and_loss_choice_name_the_task():
    with pytest.raises(ValueError, match="task 'g': a binary task has size 1, got 2"):
        Task("g", "binary", 2)
    with pytest.raises(ValueError, match="task 'c': a classification task needs size >= 2"):
        Task("c", "classification", 1)
    with pytest.raises(ValueError, match="task 'e': loss 'circular' needs a circle"):
        Task("e", "distribution", 6, loss="circular")
    with pytest.raises(ValueError, match="loss 'kl' does not fit kind 'regression'; choose one of mse, huber"):
        Task("r", "regression", 1, loss="kl")


def test_test_metrics_and_baselines_match_hand_computed_values():
    style = BUILT_IN[0]
    p = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    t = np.array([0, 2, 1, 1])
    assert style.handler.test_metrics(style, p, t) == {"style": {"accuracy": 0.75, "samples": 4}}
    np.testing.assert_allclose(style.handler.constant_prediction(style, np.array([0, 2, 2, 1, 2])),
                               [0.2, 0.2, 0.6])
    good = BUILT_IN[5]
    assert good.handler.test_metrics(good, np.array([0.9, 0.2, 0.6]), np.array([1, 1, 0])) == {
        "good": {"accuracy": pytest.approx(1 / 3)}}
    tags = BUILT_IN[6]
    train = np.array([[1, 0, -1, 1, 0], [1, -1, -1, 0, 0], [0, 1, 1, 1, 0]], np.float32)
    np.testing.assert_allclose(tags.handler.constant_prediction(tags, train), [2 / 3, 1 / 2, 1.0, 2 / 3, 0.0])
    va = BUILT_IN[3]
    pred = np.array([[5.0, 3.0], [6.0, 4.0], [8.0, 2.0]])
    true = np.array([[4.0, 3.0], [6.0, 5.0], [7.0, 4.0]])
    got = va.handler.test_metrics(va, pred, true)
    assert set(got) == {"valence", "arousal"}
    assert got["valence"]["mae"] == pytest.approx(2 / 3) and got["arousal"]["mae"] == pytest.approx(1.0)
    assert got["valence"]["pearson_r"] == pytest.approx(np.corrcoef(pred[:, 0], true[:, 0])[0, 1])


def test_targets_are_encoded_by_their_kind():
    emotion, style = BUILT_IN[1], BUILT_IN[0]
    one_hot = emotion.handler.encode_target(emotion, [tf.constant(3, tf.int64)])
    np.testing.assert_array_equal(one_hot.numpy(), np.eye(8)[3])
    label = style.handler.encode_target(style, [tf.constant(2, tf.int64)])
    assert label.dtype == tf.int32 and int(label) == 2
    va = BUILT_IN[3]
    joined = va.handler.encode_target(va, [tf.constant(4.0), tf.constant([6.0])])
    np.testing.assert_array_equal(joined.numpy(), [4.0, 6.0])
