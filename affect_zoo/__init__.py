"""affect_zoo: image aesthetics and emotion models for Keras 3 / TensorFlow."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from affect_zoo import emotion, layers, losses, metrics  # noqa: E402,F401
