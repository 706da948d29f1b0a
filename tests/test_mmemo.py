"""The multimodal network: classifier selection by present modalities, the masked sum of seven cross-entropies
(checked against NumPy), exact dropping of absent modalities in training, text/tag encoding that never fails,
word-vector init, and a .keras round trip."""
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo.models import mmemo
from affect_zoo.models.mmemo import MaskedGlobalPooling1D
from affect_zoo.text import OOV, PAD, Vocabulary, load_word_vectors, normalize_tags, tokenize
from affect_zoo.training import MultiTaskModel

K, TEXT_LEN, TAGS, TEXT_VOCAB, TAG_VOCAB = 4, 12, 10, 40, 30
SHAPE = (32, 32, 3)
COMBOS = [(i, t, g) for g in (0, 1) for t in (0, 1) for i in (0, 1)]  # code = i + 2t + 4g


def build(**options):
    keras.utils.set_random_seed(0)
    return mmemo.build("vgg16", K, SHAPE, text_vocab_size=TEXT_VOCAB, tags_vocab_size=TAG_VOCAB,
                       max_text_length=TEXT_LEN, max_tags=TAGS, **options)


@functools.lru_cache(maxsize=None)
def built():
    return build()


def batch(presence, seed=0):
    """Inputs for rows of (image, text, tags) presence flags; absent modalities zeroed as the pipeline does."""
    rng = np.random.default_rng(seed)
    p = np.asarray(presence, "float32")
    n = len(p)
    text = rng.integers(2, TEXT_VOCAB, (n, TEXT_LEN)) * (np.arange(TEXT_LEN) < rng.integers(1, TEXT_LEN, (n, 1)))
    tags = rng.integers(2, TAG_VOCAB, (n, TAGS)) * (np.arange(TAGS) < rng.integers(1, TAGS, (n, 1)))
    return {"image": rng.uniform(0, 255, (n, *SHAPE)).astype("float32") * p[:, 0, None, None, None],
            "text": (text * p[:, 1:2]).astype("int32"), "tags": (tags * p[:, 2:3]).astype("int32"),
            "image_present": p[:, 0], "text_present": p[:, 1], "tags_present": p[:, 2]}


def test_each_subset_of_modalities_is_answered_by_its_classifier():
    out = {k: v.numpy() for k, v in built()(batch(COMBOS)).items()}
    assert list(mmemo.OUTPUT_NAMES) == ["p_image", "p_text", "p_tags", "p_image_text", "p_image_tags",
                                        "p_text_tags", "p_all"]
    expected = [-1, 0, 1, 3, 2, 4, 5, 6]
    np.testing.assert_array_equal(out["answered_by"], expected)
    for row, index in enumerate(expected):
        want = np.full(K, 1 / K) if index < 0 else out[mmemo.OUTPUT_NAMES[index]][row]
        np.testing.assert_allclose(out["prediction"][row], want, rtol=1e-6)
    for name in mmemo.OUTPUT_NAMES:
        np.testing.assert_allclose(out[name].sum(axis=1), 1.0, rtol=1e-5)


def test_loss_is_the_sum_of_the_present_terms_only():
    """A batch without any text: MultiTaskModel's loss equals the NumPy sum over the classifiers that use no text
    (each term masked per sample by its other modalities), averaged over the batch."""
    net = built()
    presence = [(1, 0, 1), (1, 0, 0), (0, 0, 1), (1, 0, 1), (0, 0, 1), (1, 0, 0)]
    x = batch(presence, seed=1)
    labels = np.array([0, 1, 2, 3, 1, 2])
    model = MultiTaskModel(net, tasks=mmemo.tasks(K))
    model.compile(run_eagerly=True)
    ds = tf.data.Dataset.from_tensor_slices({**x, "label": labels}).map(mmemo.training_example).batch(6)
    loss = model.evaluate(ds, verbose=0, return_dict=True)["loss"]

    out = {k: v.numpy().astype("float64") for k, v in net(x).items()}
    p = np.asarray(presence, "float64")
    total = 0.0
    for combo, name in zip(mmemo.CLASSIFIERS, mmemo.OUTPUT_NAMES):
        if "text" in combo:
            continue
        mask = np.prod([p[:, mmemo.MODALITIES.index(m)] for m in combo], axis=0)
        ce = -np.log(np.clip(out[name][np.arange(6), labels], 1e-7, 1 - 1e-7))
        total += np.sum(mask * ce) / 6
    assert loss == pytest.approx(total, rel=1e-5)


def branch_weights(net, prefixes):
    return [np.array(w) for layer in net.layers if layer.name.startswith(prefixes) for w in layer.weights]


@pytest.mark.slow
def test_training_leaves_absent_modalities_untouched_then_save_and_load(tmp_path):
    """Graph-mode fit on batches without text: the text encoder and every classifier that reads text get an
    exactly zero gradient (their terms are dropped), the others train; then a .keras round trip."""
    net = build()
    text_parts = ("text_", "p_text", "image_text", "p_image_text", "text_tags", "p_text_tags", "all_", "p_all")
    other_parts = ("image_", "tags_", "p_image", "p_tags")
    text_before, other_before = branch_weights(net, text_parts), branch_weights(net, other_parts)
    presence = [(1, 0, 1), (1, 0, 0), (0, 0, 1), (1, 0, 1)] * 2
    x = batch(presence, seed=2)
    ds = tf.data.Dataset.from_tensor_slices({**x, "label": np.arange(8) % K}).map(mmemo.training_example).batch(4)
    model = MultiTaskModel(net, tasks=mmemo.tasks(K))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(ds, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["p_text_loss"][0] == 0.0
    assert all(np.array_equal(b, a) for b, a in zip(text_before, branch_weights(net, text_parts)))
    assert any(not np.array_equal(b, a) for b, a in zip(other_before, branch_weights(net, other_parts)))

    path = tmp_path / "mmemo.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    probe = batch(COMBOS, seed=3)
    expected, got = net(probe), loaded(probe)
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_masked_pooling_against_numpy():
    x = np.array([[[1.0, -2.0], [3.0, 5.0], [9.0, 9.0]], [[4.0, 4.0], [7.0, 7.0], [0.0, 0.0]]], "float32")
    ids = np.array([[5, 3, 0], [0, 0, 0]])
    out = MaskedGlobalPooling1D(("max", "avg", "min"))([x, ids]).numpy()
    np.testing.assert_allclose(out[0], [3, 5, 2, 1.5, 1, -2])
    np.testing.assert_array_equal(out[1], np.zeros(6))  # no token: zeros, never ±1e9


def test_vocabulary_truncates_and_never_fails():
    vocab = Vocabulary.build([tokenize("the cat sat on the mat"), tokenize("The dog!")])
    assert vocab.tokens[:3] == ["<pad>", "<oov>", "the"] and len(vocab) == 2 + 6
    ids, present = vocab.encode_text("The unicorn sat " + "cat " * 50, max_length=5)
    assert present and ids.tolist() == [vocab.id("the"), OOV, vocab.id("sat"), vocab.id("cat"), vocab.id("cat")]
    ids, present = vocab.encode_text(None, 4)
    assert ids.tolist() == [0, 0, 0, 0] and present is False
    assert vocab.encode_text("?! …", 4)[1] is False
    assert vocab.encode_text("🙂 <pad> 123", 4)[0].tolist() == [OOV, OOV, 0, 0]  # "pad" and "123" are words
    tags = [f"t{i}" for i in range(12)] + ["T0", "  ", None]
    assert normalize_tags(tags) == [f"t{i}" for i in range(12)]
    tag_vocab = Vocabulary.build([normalize_tags(tags)])
    ids, present = tag_vocab.encode_tags(tags, max_tags=10)
    assert present and len(ids) == 10 and tag_vocab.decode(ids) == [f"t{i}" for i in range(10)]
    assert tag_vocab.encode_tags(["<pad>", "new tag"], 3)[0].tolist() == [OOV, OOV, PAD]


def test_word_vectors_initialise_the_text_embedding(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("3 4\nCat 1 2 3 4\ndog 5 6 7 8\nunused 0 0 0 1\n")
    vocab = Vocabulary(["<pad>", "<oov>", "cat", "dog", "bird"])
    matrix, found = load_word_vectors(path, vocab)
    assert found == 2 and matrix.shape == (5, 4)
    np.testing.assert_array_equal(matrix[[2, 3]], [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert np.all(matrix[0] == 0) and np.all(np.abs(matrix[[1, 4]]) <= 0.25)
    net = mmemo.build("vgg16", K, SHAPE, text_vocab_size=5, tags_vocab_size=3, max_text_length=4,
                      text_embedding_dim=4, text_embeddings=matrix)
    np.testing.assert_array_equal(net.get_layer("text_embedding").get_weights()[0], matrix)
    path.write_text("cat 1 2 3\ndog 1 2\n")
    with pytest.raises(ValueError, match=r"vectors\.txt line 2: 2 values, expected 3"):
        load_word_vectors(path, vocab)


def test_encode_records_for_predict():
    text_vocab = Vocabulary(["<pad>", "<oov>", "happy", "day"])
    tag_vocab = Vocabulary(["<pad>", "<oov>", "beach"])
    image = np.full((20, 30, 3), 200, np.uint8)
    records = [{"image": image, "text": "Happy day, unknown!", "tags": ["Beach", "x"] * 8},
               {"text": "   "}, {"tags": ["beach"]}, {}]
    x = mmemo.encode_records(records, text_vocab, tag_vocab, SHAPE, max_text_length=TEXT_LEN, max_tags=TAGS)
    assert x["image"].shape == (4, *SHAPE) and np.allclose(x["image"][0], 200)
    assert x["text"][0, :4].tolist() == [2, 3, OOV, 0] and x["tags"][0, :3].tolist() == [2, OOV, 0]
    np.testing.assert_array_equal(np.stack([x["image_present"], x["text_present"], x["tags_present"]], 1),
                                  [[1, 1, 1], [0, 0, 0], [0, 0, 1], [0, 0, 0]])
    out = built()(x)
    np.testing.assert_array_equal(out["answered_by"], [6, -1, 2, -1])


def np_text_pooling(ids, embedded, kernel, bias):
    """One text branch in NumPy: a "valid" Conv1D (windows of h whole tokens), ReLU, then max/avg/min over the
    windows whose first token is real (id != 0)."""
    h = kernel.shape[0]
    out = []
    for row_ids, row in zip(ids, embedded.astype(np.float64)):
        windows = np.stack([row[i:i + h].reshape(-1) for i in range(len(row) - h + 1)])
        conv = np.maximum(windows @ kernel.reshape(-1, kernel.shape[-1]) + bias, 0.0)
        real = conv[row_ids[:len(conv)] != 0]
        out.append(np.concatenate([real.max(0), real.mean(0), real.min(0)]) if len(real) else
                   np.zeros(3 * conv.shape[1]))
    return np.array(out)


def test_text_encoder_uses_plain_windows_and_dropout_by_default():
    """Pagé Fortin & Chaib-draa 2019: the text (cut at 150 words) is a matrix of word vectors convolved by plain
    h×300 windows, h = 3, 4, 5 (no padding: a text of n words has n − h + 1 windows), pooled, with dropout in the
    extractor. Checked against NumPy with the network's own weights; dropout acts in training only."""
    net = build()
    x = batch([(1, 1, 1)] * 3, seed=4)
    x["text"][2] = 0
    x["text"][2, :2] = [7, 9]  # two words: shorter than every window, still one window (starting on a real token)
    probe = keras.Model(net.input, [net.get_layer("text_embedding").output]
                        + [net.get_layer(f"text_pool{h}").output for h in (3, 4, 5)])
    embedded, *pooled = (np.asarray(v) for v in probe(x))
    for h, got in zip((3, 4, 5), pooled):
        conv = net.get_layer(f"text_conv{h}")
        assert conv.padding == "valid" and conv.output.shape[1] == TEXT_LEN - h + 1
        kernel, bias = conv.get_weights()
        np.testing.assert_allclose(got, np_text_pooling(x["text"], embedded, kernel, bias), rtol=1e-4, atol=1e-5)
    dropout = net.get_layer("text_pooled_dropout")
    assert dropout.rate == 0.5 and dropout.input is net.get_layer("text_concat").output
    assert net.get_layer("text_fc").input is dropout.output
    features = keras.Model(net.input, net.get_layer("text_fc").output)
    np.testing.assert_array_equal(features(x, training=False), features(x, training=False))
    assert not np.allclose(features(x, training=True), features(x, training=False))


def test_paper_defaults_and_the_documented_options():
    """Defaults are the paper's: 150 words, valid windows, text dropout; "same" and no dropout are options."""
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(mmemo.build).parameters.items()}
    assert (defaults["max_text_length"], defaults["text_padding"], defaults["text_dropout"]) == (150, "valid", 0.5)
    vocab = Vocabulary(["<pad>", "<oov>", "w"])
    x = mmemo.encode_records([{"text": "w " * 200}], vocab, vocab, SHAPE)
    assert x["text"].shape == (1, 150) and (x["text"] != 0).sum() == 150
    net = build(text_padding="same", text_dropout=0.0)
    assert net.get_layer("text_conv5").output.shape[1] == TEXT_LEN
    assert not [layer.name for layer in net.layers if "dropout" in layer.name]
    both = {layer.name for layer in build(dropout=0.5).layers}  # the extractor's and p_text's own dropout
    assert {"text_pooled_dropout", "text_dropout"} <= both
    with pytest.raises(ValueError, match=r"text_padding must be one of \('valid', 'same'\)"):
        build(text_padding="causal")


def test_text_shorter_than_the_widest_window_is_padded_to_it(tmp_path):
    """max_text_length 4 < h = 5: the ids are padded to 5 inside the network, so every width has a window."""
    net = mmemo.build("vgg16", K, SHAPE, text_vocab_size=TEXT_VOCAB, tags_vocab_size=TAG_VOCAB, max_text_length=4,
                      max_tags=TAGS)
    assert net.get_layer("text_conv5").output.shape[1] == 1 and net.get_layer("text_conv3").output.shape[1] == 3
    x = {**batch([(0, 1, 0)] * 2, seed=5), "text": np.array([[3, 4, 5, 6], [8, 0, 0, 0]], "int32")}
    out = net(x)
    assert np.isfinite(out["p_text"]).all() and out["answered_by"].numpy().tolist() == [1, 1]
    assert np.abs(np.asarray(keras.Model(net.input, net.get_layer("text_pool5").output)(x))).sum() > 0
    path = tmp_path / "short.keras"
    net.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(x)["p_text"], out["p_text"], rtol=1e-5)


def test_encoders_are_declared_shared_and_gradnorm_is_refused():
    """Every encoder variable is shared (each feeds four classifiers); no classifier variable is."""
    model = MultiTaskModel(built(), tasks=mmemo.tasks(K), balancer="mgda")
    paths = {v.path for v in model.shared_variables()}
    classifiers = tuple(f"{prefix}/" for name in mmemo.OUTPUT_NAMES
                        for prefix in (name, f"{name[2:]}_fc1", f"{name[2:]}_fc2"))
    expected = {v.path for v in built().trainable_variables if not v.path.startswith(classifiers)}
    assert paths == expected and any(p.startswith("image_") for p in paths) and "text_fc/kernel" in paths
    with pytest.raises(ValueError, match="no convolution receives every task's gradient"):
        MultiTaskModel(built(), tasks=mmemo.tasks(K), balancer="gradnorm")
