"""Multi-label classification with label attention, SE and semantic dependencies (Xue et al., Opto-Electronic
Engineering 2019), trained in four stages.

Network (``build``), for the last stage X (B, H, W, D) of a staged backbone (DenseNet121 at 448 px: 14×14×1024)::

    y'    = FC_C(GAP(X))                                       global branch
    Z     = conv 1×1×512 → 3×3×512 → 1×1×C (ReLU, ReLU, linear) attention scores, one channel per label
    A     = LabelAttention(Z)                                  softmax over the H·W positions, per label
    ỹ     = FC_C(GAP(SemanticDependency(A)))                   SE → (1×1 conv 256/256/512/1024 → SE) × 4
    ŷ     = α·y' + (1 − α)·ỹ                                   AlphaFusion, α ∈ [0, 1] trainable, init 0.48

This is the paper's path (eq. 8: "M = F_cc(A, θ_cc), A ∈ R^{14×14×C}": the attention maps go straight into SE and
the four convolutions), the default ``attention="maps"``. ``attention="confidence"`` is this project's variant
after SRN (Zhu et al., CVPR 2017), not the paper's: an extra 1×1 conv S of X gives per-label confidence maps,
the semantic part receives U = A ⊙ σ(S), and the attention branch has its own logits y_att = Σ_p A(p)·S(p)
(``affect_zoo.layers.attention``). The fusion is of logits; every output is a sigmoid. The network takes
``images`` (RGB 0–255) and outputs a dict of probabilities:

    <task>              σ(ŷ), the model's prediction
    <task>_global       σ(y'), the global branch alone
    <task>_semantic     σ(ỹ), the attention + semantic branch alone
    <task>_attention    σ(y_att), the attention branch alone (``attention="confidence"`` only)

Layers are named by part — ``backbone_…`` (preprocessing and stages), ``global_…`` (y' head), ``attention_…``,
``semantic_…``, ``fusion_…`` — and ``phase_trainable(network, phase)`` freezes and unfreezes them for the four
stages; ``phase_tasks(task, phase, attention)`` says which output each stage trains:

    phase (name)     trains                   on output          (attention="maps", the paper's path)
    1 (backbone)     backbone + global        <task>_global      fine-tune the backbone as a plain classifier
    2 (attention)    attention + semantic     <task>_semantic    backbone frozen
    3 (semantic)     semantic                 <task>_semantic    backbone and attention frozen
    4 (all)          everything, α included   <task>             joint fine-tuning

On the paper's path the attention maps have no output of their own: the only way from A to a loss is through the
semantic part, so stage 2 trains the attention convs together with the (still untrained) semantic part on ỹ;
training the attention alone through a frozen, randomly initialised semantic part would fit A to random
projections. Stage 3 then refines the semantic part with the attention fixed. With ``attention="confidence"``
stage 2 trains the attention alone on ``<task>_attention`` (SRN's second stage) and the rest is the same.

Targets are multi-hot, with ``-1`` meaning "ignore this label of this sample" (VOC's difficult objects;
``affect_zoo.metrics_multilabel.ignore_targets(labels, difficult)`` makes them): train with
``Task(kind="multilabel", loss="masked_bce")`` (``metrics_multilabel.MaskedBinaryCrossentropy``, which gives
those entries zero loss) and evaluate with mAP (``metrics_multilabel.mean_average_precision`` /
``MeanAveragePrecision``, which leave them out of the ranking).
"""
import dataclasses

import keras

from affect_zoo import backbones
from affect_zoo.layers.attention import AlphaFusion, LabelAttention, SemanticDependency
from affect_zoo.tasks import Task, as_tasks

PARTS = ("backbone", "global", "attention", "semantic", "fusion")
ATTENTION_MODES = ("maps", "confidence")  # the paper's path (default), the SRN-style variant
#: the parts each stage trains and the output it trains on, for the paper's path (attention="maps")
PHASES = {1: ("backbone", "global"), 2: ("attention", "semantic"), 3: ("semantic",), 4: PARTS}
PHASE_OUTPUTS = {1: "_global", 2: "_semantic", 3: "_semantic", 4: ""}
#: the same for attention="confidence", whose attention branch has an output of its own
CONFIDENCE_PHASES = {**PHASES, 2: ("attention",)}
CONFIDENCE_PHASE_OUTPUTS = {**PHASE_OUTPUTS, 2: "_attention"}
PHASE_NAMES = {"backbone": 1, "attention": 2, "semantic": 3, "all": 4}  # the recipes' phase names


def build(backbone, tasks, input_shape=(448, 448, 3), *, weights=None, alpha=None, attention_filters=(512, 512),
          semantic_filters=(256, 256, 512, 1024), se_ratio=16, fusion_alpha=0.48, fusion="clip",
          rescale_attention=False, attention="maps", dropout=0.0, name=None):
    """Build the semdep network (see the module docstring); returns a functional keras.Model.

    Args:
        backbone: a name from ``affect_zoo.backbones.available()``; its last stage gives X.
        tasks: one multilabel Task (or its dict), or a list holding exactly one.
        input_shape: (H, W, 3); the paper uses 448 × 448.
        weights: backbone init: None, "imagenet", "hed" (vgg16) or a ``.weights.h5`` path.
        alpha: MobileNetV2 width (as in ``multitask.build``).
        attention_filters: the two conv_att widths before the 1×1×C scores (paper: 512, 512).
        semantic_filters: the 1×1 convs of the semantic-dependency block (paper: 256, 256, 512, 1024).
        se_ratio: SE reduction ratio.
        fusion_alpha, fusion: α's initial value (paper: 0.48) and parametrization ("clip" or "sigmoid").
        rescale_attention: multiply the attention maps by H·W before the semantic part (a uniform map becomes
            ones; the paper feeds the plain softmax).
        attention: "maps" (the paper's eq. 8: A itself feeds the semantic part) or "confidence" (this project's
            SRN-style variant: A ⊙ σ(S), plus the output ``<task>_attention``); see the module docstring.
        dropout: rate before the global and semantic FC layers.
    """
    task = _single_task(tasks)
    _mode(attention)
    images = keras.Input(shape=input_shape, name="images")
    x = backbones.Preprocessing(backbone, name="backbone_preprocessing")(images)
    x = backbones.build_stages(backbone, input_shape, weights, name_prefix="backbone_", alpha=alpha)(x)
    labels = task.size

    g = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    if dropout:
        g = keras.layers.Dropout(dropout, name="global_dropout")(g)
    y_global = keras.layers.Dense(labels, name="global_logits")(g)

    z = x
    for i, filters in enumerate(attention_filters, start=1):
        z = keras.layers.Conv2D(filters, 1 if i == 1 else 3, padding="same", activation="relu",
                                name=f"attention_conv{i}")(z)
    z = keras.layers.Conv2D(labels, 1, name="attention_scores")(z)
    attention_layer = LabelAttention(mode=attention, rescale=rescale_attention, name="attention_labels")
    attended = attention_layer([z, x] if attention == "confidence" else z)

    s = SemanticDependency(semantic_filters, se_ratio=se_ratio, name="semantic_dependency")(attended["attended"])
    s = keras.layers.GlobalAveragePooling2D(name="semantic_pool")(s)
    if dropout:
        s = keras.layers.Dropout(dropout, name="semantic_dropout")(s)
    y_semantic = keras.layers.Dense(labels, name="semantic_logits")(s)

    fused = AlphaFusion(fusion_alpha, parametrization=fusion, name="fusion_alpha")([y_global, y_semantic])
    branches = [("", fused), ("_global", y_global), ("_semantic", y_semantic)]
    if attention == "confidence":
        branches.append(("_attention", attended["scores"]))
    outputs = {}
    for suffix, logits in branches:
        outputs[task.name + suffix] = keras.layers.Activation("sigmoid", name=task.name + suffix)(logits)
    return keras.Model(images, outputs, name=name or f"semdep_{backbone}")


def _single_task(tasks):
    if isinstance(tasks, (Task, dict)):
        tasks = [tasks]
    tasks = as_tasks(tasks)
    if len(tasks) != 1 or tasks[0].kind != "multilabel":
        raise ValueError(f"semdep predicts one multilabel task; got {[(t.name, t.kind) for t in tasks]}")
    return tasks[0]


def _mode(attention):
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
    return attention


def attention_mode(network):
    """The ``attention`` option a semdep network was built with ("maps" or "confidence")."""
    return network.get_layer("attention_labels").mode


def phase_parts(phase, attention="maps"):
    """The parts stage ``phase`` trains (a tuple of ``PARTS``) for networks built with ``attention``."""
    return (PHASES if _mode(attention) == "maps" else CONFIDENCE_PHASES)[_phase(phase)]


def _phase_output(phase, attention):
    return (PHASE_OUTPUTS if _mode(attention) == "maps" else CONFIDENCE_PHASE_OUTPUTS)[_phase(phase)]


def _phase(phase):
    phase = PHASE_NAMES.get(phase, phase) if isinstance(phase, str) else phase
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {sorted(PHASES)} or {list(PHASE_NAMES)}, got {phase!r}")
    return phase


def part_of(layer_name):
    """The part a top-level layer belongs to (by its name prefix), or None (inputs, output activations)."""
    for part in PARTS:
        if layer_name.startswith(part + "_"):
            return part
    return None


def phase_trainable(network, phase):
    """Set ``trainable`` on the parts of a semdep network for training stage ``phase`` (1–4, or its name in
    ``PHASE_NAMES``: backbone, attention, semantic, all; see the module), for the network's attention mode.

    Returns {part: trainable}. A layer with weights outside the named parts is an error (a renamed layer must not
    stay trainable by accident). Keras compiles the trainable set into the train step: compile the (wrapping)
    model again after this call, with a fresh optimizer (its slots are made for the trainable variables).
    Frozen BatchNormalization layers also run in inference mode, so their moving statistics stay as they are.
    """
    on = set(phase_parts(phase, attention_mode(network)))
    for layer in network.layers:
        part = part_of(layer.name)
        if part is None:
            if layer.weights:
                raise ValueError(f"layer {layer.name!r} has weights but belongs to no part {PARTS}")
            continue
        layer.trainable = part in on
    return {part: part in on for part in PARTS}


def phase_tasks(task, phase, attention="maps"):
    """The task(s) trained in ``phase``: the main task renamed to the output that stage trains (a list), for a
    network built with ``attention``."""
    task = _single_task(task)
    return [dataclasses.replace(task, name=task.name + _phase_output(phase, attention))]


def phase_targets(targets, task_name, phase, attention="maps"):
    """Rename the target ``task_name`` of a target dict to the output trained in ``phase`` (for ``Dataset.map``)."""
    suffix = _phase_output(phase, attention)
    return {(key + suffix if key == task_name else key): value for key, value in targets.items()}
