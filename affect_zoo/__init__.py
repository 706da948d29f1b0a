"""affect_zoo: image aesthetics and emotion models for Keras 3 / TensorFlow.

    import affect_zoo
    affect_zoo.list_models("afi_*")
    model = affect_zoo.load("afi_vgg16_emotion6")
    affect_zoo.predict(model, ["photo.jpg"])
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from affect_zoo import balancing, emotion, layers, losses, metrics, tasks, training  # noqa: E402,F401
from affect_zoo.zoo import ModelCard, list_models, load, model_card, predict, register_model  # noqa: E402,F401
