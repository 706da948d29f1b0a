"""Input pipelines: TFDS datasets → batched, prefetched tf.data pipelines for a model's tasks.

Models normalise their input themselves (``backbones.Preprocessing`` inside the network), so pipelines yield
RGB float32 in [0, 255] at the model's input size; training, ``affect_zoo.predict`` and the exported serving
signature all resize with ``resize_for_model``, so an image is seen the same way everywhere.
"""
import tensorflow as tf


def resize_for_model(images, size):
    """RGB images (H, W, 3) or (B, H, W, 3), any numeric dtype → float32 in [0, 255] at ``size`` = (h, w).

    The whole image is resized (bilinear, antialiased), not cropped: aesthetics depend on composition, so the
    evaluation view keeps all of it at the cost of distorting the aspect ratio.
    """
    images = tf.cast(images, tf.float32)
    resized = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)
