"""Input pipelines on the Emotion6 builder's dummy data (41/6/11 tiny JPEGs), built once per module."""
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from affect_zoo import data
from affect_zoo.backbones import preprocess_input
from affect_zoo.tasks import Task

SIZE = (12, 10)
TASKS = [Task("emotion", "distribution", 7, branch=1, circle="emotion6"),
         Task("va", "regression", 2, labels=("valence", "arousal"), target_range=(1, 9))]


@pytest.fixture(scope="module")
def builder(emotion6_dummy_data_dir):
    return tfds.builder_from_directory(str(emotion6_dummy_data_dir / "emotion6" / "1.0.0"))


@pytest.fixture(scope="module")
def train_split(builder):
    return data.load_split(builder.data_dir, "train")


def batches(pipeline):
    """All batches as numpy: (list of image batches, list of target dicts)."""
    xs, ys = [], []
    for x, y in pipeline:
        xs.append(x.numpy())
        ys.append({k: v.numpy() for k, v in y.items()})
    return xs, ys


def test_eval_pipeline_shapes_dtypes_and_ranges(train_split):
    xs, ys = batches(data.make_pipeline(train_split, TASKS, SIZE, 16, training=False, targets="emotion6"))
    assert [len(x) for x in xs] == [16, 16, 9]
    for x, y in zip(xs, ys):
        assert x.dtype == np.float32 and x.shape[1:] == (*SIZE, 3)
        assert x.min() >= 0 and x.max() <= 255 and x.max() > 1
        assert y["emotion"].dtype == np.float32 and y["emotion"].shape == (len(x), 7)
        np.testing.assert_allclose(y["emotion"].sum(-1), 1, atol=1e-3)
        assert y["va"].dtype == np.float32 and y["va"].shape == (len(x), 2)
        assert y["va"].min() >= 1 and y["va"].max() <= 9


def test_eval_images_are_resize_for_model_of_the_decoded_image_and_targets_match(builder, train_split):
    xs, ys = batches(data.make_pipeline(train_split, TASKS, SIZE, 8, training=False, targets="emotion6"))
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    images, emotion, va = np.concatenate(xs), np.concatenate([y["emotion"] for y in ys]), np.concatenate(
        [y["va"] for y in ys])
    assert len(images) == len(examples)
    for i, ex in enumerate(examples):
        np.testing.assert_array_equal(images[i], data.resize_for_model(ex["image"], SIZE).numpy())
        np.testing.assert_array_equal(emotion[i], ex["distribution"])
        np.testing.assert_array_equal(va[i], [ex["valence"], ex["arousal"]])


def test_training_augmentation_is_seeded_and_differs_from_eval(train_split):
    def run(seed, **kw):
        return batches(data.make_pipeline(train_split, TASKS, SIZE, 16, training=True, targets="emotion6",
                                          seed=seed, **kw))

    (xs, ys), (again, ys_again) = run(3), run(3)
    for a, b, ya, yb in zip(xs, again, ys, ys_again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya["va"], yb["va"])
    train = np.concatenate(xs)
    assert train.dtype == np.float32 and train.shape == (41, *SIZE, 3)
    assert train.min() >= 0 and train.max() <= 255
    assert not np.array_equal(train, np.concatenate(run(4)[0]))
    # Same examples as eval (shuffled), each target still with its own image; the crop and flip change pixels.
    eval_xs, eval_ys = batches(data.make_pipeline(train_split, TASKS, SIZE, 16, training=False, targets="emotion6"))
    eval_emotion = np.concatenate([y["emotion"] for y in eval_ys])
    order = [np.flatnonzero((eval_emotion == e).all(-1))[0] for e in np.concatenate([y["emotion"] for y in ys])]
    assert sorted(order) == list(range(41))
    unaugmented = np.concatenate(run(3, augment=False)[0])
    np.testing.assert_array_equal(unaugmented, np.concatenate(eval_xs)[order])
    assert np.abs(train - unaugmented).mean() > 1.0


def test_every_epoch_draws_new_augmentation(train_split):
    pipeline = data.make_pipeline(train_split, TASKS, SIZE, 41, training=True, targets="emotion6", seed=5,
                                  shuffle_buffer=0)
    first, second = (x.numpy() for x, _ in (next(iter(pipeline)), next(iter(pipeline))))
    assert not np.array_equal(first, second)


def test_random_crop_keeps_most_of_the_image_and_stays_inside():
    for shape in [(300, 100), (100, 300), (40, 40), (7, 5)]:
        for i in range(50):
            y, x, h, w = data._crop_window(tf.constant([*shape, 3]), tf.constant([i, 17], tf.int64)).numpy()
            assert 0 <= y and y + h <= shape[0] and 0 <= x and x + w <= shape[1]
            tolerance = (h + w + 1) / (shape[0] * shape[1])  # rounding to whole pixels
            assert h * w / (shape[0] * shape[1]) >= data.MIN_CROP_AREA - tolerance


def test_randaugment_is_seeded_and_stays_in_range(train_split):
    def run():
        return np.concatenate(batches(data.make_pipeline(
            train_split, TASKS, SIZE, 16, training=True, targets="emotion6", seed=2,
            augment={"randaugment": True}))[0])

    first = run()
    np.testing.assert_array_equal(first, run())
    assert first.min() >= 0 and first.max() <= 255


def test_drop_remainder_follows_the_replica_count(train_split, monkeypatch):
    def sizes(**kw):
        return [len(x) for x, _ in data.make_pipeline(train_split, TASKS, SIZE, 16, training=False,
                                                      targets="emotion6", **kw)]

    assert sizes() == [16, 16, 9]
    assert sizes(drop_remainder=True) == [16, 16]
    monkeypatch.setattr(tf.distribute, "get_strategy", lambda: types.SimpleNamespace(num_replicas_in_sync=2))
    assert sizes() == [16, 16]
    assert sizes(drop_remainder=False) == [16, 16, 9]


def test_normalize_applies_the_backbone_preprocessing(train_split):
    plain, _ = batches(data.make_pipeline(train_split, TASKS, SIZE, 41, training=False, targets="emotion6"))
    normalised, _ = batches(data.make_pipeline(train_split, TASKS, SIZE, 41, training=False, targets="emotion6",
                                               normalize="densenet121"))
    np.testing.assert_allclose(normalised[0], preprocess_input("densenet121", plain[0]).numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown backbone 'resnet5'"):
        data.make_pipeline(train_split, TASKS, SIZE, 41, training=False, targets="emotion6", normalize="resnet5")


def test_target_kinds_from_a_class_label(train_split):
    tasks = [Task("keyword", "classification", 6), Task("keyword_dist", "distribution", 6)]
    pipeline = data.make_pipeline(train_split, tasks, SIZE, 41, training=False,
                                  targets={"keyword": "keyword", "keyword_dist": ["keyword"]})
    _, y = next(iter(pipeline))
    assert y["keyword"].dtype == tf.int32 and y["keyword"].shape == (41,)
    np.testing.assert_array_equal(y["keyword_dist"].numpy(), np.eye(6)[y["keyword"].numpy()])


@pytest.mark.parametrize("targets, message", [
    ({"emotion": ["distribution"], "va": ["valence", "mood"]}, r"'mood'.*\['arousal', 'distribution'"),
    (None, r"feature 'emotion' is not in the dataset.*pass targets="),
    ({"emotion": ["distribution"]}, r"no feature for task 'va'"),
    ({"emotion": ["distribution"], "va": ["file_name"]}, r"'file_name' has dtype string"),
    ({"emotion": ["valence", "arousal"], "va": ["valence", "arousal"]}, r"task 'emotion'.*shape \(2,\).*\(7,\)"),
    ("emotion7", r"no default targets for dataset 'emotion7'"),
])
def test_bad_targets_fail_at_construction(train_split, targets, message):
    with pytest.raises(ValueError, match=message):
        data.make_pipeline(train_split, TASKS, SIZE, 4, training=True, targets=targets)


def test_unknown_augment_option(train_split):
    with pytest.raises(ValueError, match=r"unknown augment option\(s\) \['mixup'\]"):
        data.make_pipeline(train_split, TASKS, SIZE, 4, training=True, targets="emotion6", augment={"mixup": True})


def test_load_split_by_name_or_directory_and_missing_dataset(builder, tmp_path):
    by_name = data.load_split("emotion6", "test", data_dir=builder.data_dir.split("/emotion6/")[0])
    by_dir = data.load_split(builder.data_dir, "test")
    assert [e["file_name"] for e in by_name.as_numpy_iterator()] == [e["file_name"] for e in by_dir.as_numpy_iterator()]
    with pytest.raises(ValueError, match=rf"not built under {tmp_path}/emotion6; .*tfds build tfds_builders/emotion6"):
        data.load_split("emotion6", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=rf"no built dataset at {tmp_path}/emotion6/1.0.0 .*tfds build "
                                         r"tfds_builders/emotion6"):
        data.load_split(str(tmp_path / "emotion6" / "1.0.0"), "train")


def shorter_side_reference(image, shorter):
    """The protocol written out: scale both sides by shorter / min(H, W), rounded (aspect kept), bilinear."""
    h, w = image.shape[:2]
    scale = shorter / min(h, w)
    size = (max(shorter, int(round(h * scale))), max(shorter, int(round(w * scale))))
    return tf.image.resize(image.astype(np.float32), size, method="bilinear", antialias=True).numpy()


def test_shorter_side_resize_then_crop_training_view():
    """Yang et al. 2021 (seed 001): "resize the shorter side to 480, crop 448 × 448" — here at 24 → 20 px on 30×45
    and 45×30 images: without ``crop`` the centre crop, with it a crop that is some 20×20 window of the resized
    image (aspect kept: 24×36)."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((30, 45, 3), (45, 30, 3))]
    source = tf.data.Dataset.from_generator(lambda: ({"image": im, "y": np.float32(1)} for im in images),
                                            output_signature={"image": tf.TensorSpec((None, None, 3), tf.uint8),
                                                              "y": tf.TensorSpec((), tf.float32)})
    task = [Task("y", "regression", 1)]
    centre = {"resize_shorter": 24, "crop": False, "flip": False}
    xs, _ = batches(data.make_pipeline(source, task, (20, 20), 2, training=True, augment=centre, shuffle_buffer=0,
                                       seed=0))
    for got, image in zip(xs[0], images):
        ref = shorter_side_reference(image, 24)
        assert min(ref.shape[:2]) == 24 and max(ref.shape[:2]) == 36
        top, left = (ref.shape[0] - 20) // 2, (ref.shape[1] - 20) // 2
        np.testing.assert_allclose(got, np.clip(ref[top:top + 20, left:left + 20], 0, 255), atol=1e-3)
    random = {"resize_shorter": 24, "crop": True, "flip": False}
    offsets = set()
    for seed in range(4):
        xs, _ = batches(data.make_pipeline(source, task, (20, 20), 2, training=True, augment=random,
                                           shuffle_buffer=0, seed=seed))
        for got, image in zip(xs[0], images):
            ref = np.clip(shorter_side_reference(image, 24), 0, 255)
            found = [(i, j) for i in range(ref.shape[0] - 19) for j in range(ref.shape[1] - 19)
                     if np.allclose(got, ref[i:i + 20, j:j + 20], atol=1e-3)]
            assert found, "the crop is no 20×20 window of the shorter-side-resized image"
            offsets.add(found[0])
    assert len(offsets) > 2
    with pytest.raises(ValueError, match=r"resize_shorter must be an int >= the input size \(20, 20\)"):
        data.make_pipeline(source, task, (20, 20), 2, training=True, augment={"resize_shorter": 16})


def test_training_and_eval_views_of_an_exif_rotated_jpeg_are_upright():
    """One orientation rule everywhere: the random-crop path (which decodes only the crop of a plain JPEG) and the
    eval path both turn a JPEG whose EXIF says "rotate 90° clockwise". Stored left half white, right half black, it
    is shown with its top half white."""
    import io

    from PIL import Image

    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :30] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    examples = tf.data.Dataset.from_tensor_slices({"image": [buffer.getvalue()], "score": [[1.0]]})
    tasks = [Task("score", "regression", 1)]
    for training in (False, True):
        x = next(iter(data.make_pipeline(examples, tasks, (20, 20), 1, training=training, seed=0,
                                         augment={"flip": False})))[0].numpy()[0].mean(axis=-1)
        assert x[:8].mean() > 200 and x[-8:].mean() < 50, training  # top white, bottom black
        assert abs(x[:, :8].mean() - x[:, -8:].mean()) < 30, training
