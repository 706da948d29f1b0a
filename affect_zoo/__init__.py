"""affect_zoo: image aesthetics and emotion models for Keras 3 / TensorFlow.

    import affect_zoo
    affect_zoo.list_models("afi_*")
    model = affect_zoo.load("afi_efficientnet_lite0_emotion6")
    affect_zoo.predict(model, ["photo.jpg"])

Submodules and the names below are imported when first used (PEP 562), so ``import affect_zoo`` costs nothing
and the registry (``list_models``, ``model_card``) answers without TensorFlow; ``load`` and ``predict`` bring it
in. The trade-off: an error in a submodule shows at first use, not at ``import affect_zoo``.
"""
import importlib
import os
import pkgutil

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

#: public name → the submodule that defines it
_NAMES = {"ModelCard": "registry", "list_models": "registry", "model_card": "registry", "register_model": "registry",
          "load": "zoo", "predict": "inference"}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"affect_zoo.{_NAMES[name]}"), name)
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"affect_zoo.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"affect_zoo.{name}":
                raise
    raise AttributeError(f"module 'affect_zoo' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_NAMES, *(m.name for m in pkgutil.iter_modules(__path__))})


__all__ = sorted(_NAMES)
