"""Two-branch multi-task networks (Shen et al., 2022) and the paper's baselines, one builder for all.

- ``afi``: two copies of a staged backbone (branch 0 = T_A, aesthetics; branch 1 = T_E, emotion) with an
  AdaptiveFeatureInteraction after the chosen stages;
- ``single``: the same two branches with no interaction (= one single-task net per branch, trained side by side;
  with tasks on one branch only, a plain single-branch net);
- ``hard_share``: one trunk shared by all tasks, split after the last conv stage into per-task heads;
- ``cross_stitch`` / ``nddr``: the two branches mixed by CrossStitch / NDDR at the same sites as AFI.

Every network takes ``images`` (RGB, 0–255, float) and normalises them inside, as its backbone expects; it outputs
a dict keyed by task name. Interaction layers are named ``interaction_<stage>`` (1-based), the hard-share trunk
``shared_…``.

Each network declares its shared parameters (``affect_zoo.models.shared``), the variables more than one task's
loss reaches, and GradNorm's W, the kernel of the last convolution every task's gradient reaches:

- ``hard_share``: the whole trunk (and ``shared_head_norm``); W = the trunk's last conv kernel;
- ``afi`` / ``cross_stitch`` / ``nddr``: the interaction modules and both branches' stages up to the last
  interaction site (the mixing makes each of them feed both tasks; the stages after it are task-specific);
  W = the last conv kernel of each branch in that stage (G_k is the norm over both), never the mixing module's
  own weights;
- ``single``: a branch's stages are shared when it carries two or more tasks. With tasks on both branches no
  conv reaches every task, so GradNorm refuses the network (a clear error at ``MultiTaskModel``), and with one
  task per branch nothing is shared: PCGrad, MGDA and CAGrad refuse it too.
"""
import collections

import keras

from affect_zoo import backbones
from affect_zoo.layers import NDDR, AdaptiveFeatureInteraction, CrossStitch
from affect_zoo.models import shared
from affect_zoo.tasks import as_tasks

ARCHITECTURES = ("afi", "single", "hard_share", "cross_stitch", "nddr")
SITE_CHOICES = ("all", "shallow", "deep")
HEAD_NORMS = (None, "batch", "layer")


def interaction_sites(num_stages, stages="all"):
    """1-based stages followed by an interaction module.

    "shallow" is the first half of the stages (rounded down: ResNet 1–2, VGG16 1–2), "deep" the rest (ResNet
    3–4, VGG16 3–5), as in the paper's Table 1 ablation; a list of stage numbers is taken as given.
    """
    if isinstance(stages, str):
        if stages not in SITE_CHOICES:
            raise ValueError(f"stages must be one of {SITE_CHOICES} or a list of stage numbers, got {stages!r}")
        half = num_stages // 2
        return {"all": list(range(1, num_stages + 1)), "shallow": list(range(1, half + 1)),
                "deep": list(range(half + 1, num_stages + 1))}[stages]
    sites = sorted(set(int(s) for s in stages))
    if not sites or sites[0] < 1 or sites[-1] > num_stages:
        raise ValueError(f"stages {list(stages)} out of range: the backbone has stages 1..{num_stages}")
    return sites


def build(architecture, backbone, tasks, input_shape=(224, 224, 3), *, weights=None, stages="all",
          pooling="both", reduction=16, recalibrate=False, temperature=1.0, dropout=0.0, synchronized_bn=False,
          alpha=None, depth=None, head_norm=None, nddr=None, name=None):
    """Build a multi-task network (see the module docstring); returns a functional keras.Model.

    Args:
        architecture: one of ARCHITECTURES.
        backbone: a name from ``affect_zoo.backbones.available()``.
        tasks: Task objects or their dicts; ``branch`` puts each on T_A (0) or T_E (1).
        input_shape: (H, W, 3).
        weights: backbone init for every branch: None, "imagenet", "hed" (vgg16) or a ``.weights.h5`` path.
        stages: interaction sites: "all", "shallow", "deep" or a list of 1-based stage numbers.
        pooling, reduction, recalibrate, temperature: AFI options (Table 3 pooling ablation, r, eqs 7–8).
        dropout: rate before the heads.
        synchronized_bn: NDDR's BatchNormalization syncs statistics across replicas.
        nddr: options of every NDDR layer (``batch_norm``, ``activation``, ``self_weight``, ...; see ``NDDR``).
        alpha: MobileNetV2 width.
        depth: keep only the first ``depth`` stages of the backbone (e.g. 3 VGG16 blocks: a pretrained init
            whose two branches fit a small weights budget); sites then count within those stages.
        head_norm: None, "batch" or "layer": normalise the pooled features before the heads. Pretrained conv
            features can be large (HED's pooled VGG16 block 3 is several times a random init's): a fresh
            head on them starts with outputs tens of label units off and its first updates wreck the
            backbone. "batch" follows ``synchronized_bn``; "layer" needs no cross-replica statistics.
    """
    if head_norm not in HEAD_NORMS:
        raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {head_norm!r}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    tasks = as_tasks(tasks)
    branches = sorted({t.branch for t in tasks})
    if any(b not in (0, 1) for b in branches):
        raise ValueError(f"task branches must be 0 (T_A) or 1 (T_E), got {branches}")
    if architecture in ("afi", "cross_stitch", "nddr") and branches != [0, 1]:
        raise ValueError(f"{architecture} needs tasks on both branches (0 and 1); the tasks use {branches}")
    images = keras.Input(shape=input_shape, name="images")
    x = backbones.Preprocessing(backbone, name="preprocessing")(images)
    head_name = name or f"{architecture}_{backbone}"
    if architecture == "hard_share":
        trunk = _truncated(backbones.build_stages(backbone, input_shape, weights, name_prefix="shared_",
                                                  alpha=alpha), depth)
        out = x
        for stage in trunk:
            out = stage(out)
        features = {0: _pool(out, dropout, "shared", head_norm, synchronized_bn), 1: None}
        features[1] = features[0]
        trunk_layers = [stage.name for stage in trunk] + (["shared_head_norm"] if head_norm else [])
        return shared.declare(_with_heads(images, tasks, features, head_name), trunk_layers,
                              [shared.last_conv(trunk)])
    made = {b: _truncated(backbones.build_stages(backbone, input_shape, weights, name_prefix=f"{'ae'[b]}_",
                                                 alpha=alpha), depth) for b in branches}
    sites = set(interaction_sites(len(made[branches[0]]), stages)) if architecture != "single" else set()
    outs = {b: x for b in branches}
    for index in range(len(made[branches[0]])):
        outs = {b: made[b][index](outs[b]) for b in branches}
        if index + 1 in sites:
            layer = _interaction(architecture, f"interaction_{index + 1}", pooling, reduction, recalibrate,
                                 temperature, synchronized_bn, nddr)
            outs[0], outs[1] = layer([outs[0], outs[1]])
    features = {b: _pool(outs[b], dropout, "ae"[b], head_norm, synchronized_bn) for b in branches}
    network = _with_heads(images, tasks, features, head_name)
    if sites:
        last = max(sites)
        return shared.declare(network, [made[b][i].name for i in range(last) for b in branches]
                              + [f"interaction_{s}" for s in sorted(sites)],
                              [shared.last_conv([made[b][last - 1]]) for b in branches])
    return _declare_single(network, tasks, made, head_norm)


def _declare_single(network, tasks, made, head_norm):
    """``single``: a branch is a shared trunk for the tasks on it when it carries two or more."""
    counts = collections.Counter(t.branch for t in tasks)
    carried = [b for b in sorted(counts) if counts[b] >= 2]
    layers = [layer for b in carried
              for layer in [stage.name for stage in made[b]] + ([f"{'ae'[b]}_head_norm"] if head_norm else [])]
    if carried and len(counts) == 1:
        return shared.declare(network, layers, [shared.last_conv(made[carried[0]])])
    reason = ("architecture 'single' trains each branch on its own tasks: no convolution receives every task's "
              "gradient" + ("" if carried else ", and no parameter receives two tasks' gradients"))
    return shared.declare(network, layers, (), reason)


def _truncated(staged, depth):
    if depth is None:
        return list(staged)
    if not 1 <= depth <= len(staged):
        raise ValueError(f"depth must be in 1..{len(staged)} for {staged.name}, got {depth}")
    return list(staged)[:depth]


def _interaction(architecture, name, pooling, reduction, recalibrate, temperature, synchronized_bn, nddr):
    if architecture == "afi":
        return AdaptiveFeatureInteraction(reduction=reduction, pooling=pooling, recalibrate=recalibrate,
                                          temperature=temperature, name=name)
    if architecture == "cross_stitch":
        return CrossStitch(name=name)
    return NDDR(synchronized_bn=synchronized_bn, name=name, **(nddr or {}))


def _pool(x, dropout, prefix, norm, synchronized_bn):
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_pool")(x)
    if norm == "batch":
        x = keras.layers.BatchNormalization(synchronized=synchronized_bn, name=f"{prefix}_head_norm")(x)
    elif norm == "layer":
        x = keras.layers.LayerNormalization(name=f"{prefix}_head_norm")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
    return x


def _with_heads(images, tasks, features, name):
    return keras.Model(images, {t.name: t.head(features[t.branch]) for t in tasks}, name=name)


def copy_weights_by_name(source, target):
    """Copy the weights of every layer of ``source`` whose name and weight shapes match one in ``target``.

    This is how a two-branch net starts from single-task weights (the paper's third init): ``single`` and
    ``afi`` name their branch layers alike. Returns the names copied.
    """
    by_name = {layer.name: layer for layer in _leaves(source)}
    copied = []
    for layer in _leaves(target):
        match = by_name.get(layer.name)
        if match is None or not layer.weights:
            continue
        if [w.shape for w in match.weights] == [w.shape for w in layer.weights]:
            layer.set_weights(match.get_weights())
            copied.append(layer.name)
    return copied


def _leaves(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer
