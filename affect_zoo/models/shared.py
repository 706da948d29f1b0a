"""Which parameters of a network its tasks share, declared by the builder that knows its structure.

Balancers that work on gradients read this: PCGrad, MGDA and CAGrad combine the task gradients of the shared
variables; GradNorm measures ‖∇_W L_k‖ on W, the kernel of the last shared convolution. A declaration names
layers (so it survives saving: ``MultiTaskModel`` keeps it in its config, the network's config rebuilds the
layers under the same names):

- ``layers``: the layers whose trainable variables receive the gradient of more than one task;
- ``last_conv``: the conv layer(s) whose kernel is GradNorm's W (one per branch when branches are mixed);
- ``reason``: why a network shares nothing, for the error a balancer that needs sharing raises.
"""
import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class SharedParameters:
    layers: tuple = ()
    last_conv: tuple = ()
    reason: str = ""

    def get_config(self):
        return {"layers": list(self.layers), "last_conv": list(self.last_conv), "reason": self.reason}

    @classmethod
    def from_config(cls, config):
        return cls(tuple(config.get("layers", ())), tuple(config.get("last_conv", ())), config.get("reason", ""))


_ATTRIBUTE = "affect_zoo_shared_parameters"


def declare(network, layers=(), last_conv=(), reason=""):
    """Record on ``network`` which layers its tasks share; returns the network."""
    setattr(network, _ATTRIBUTE, SharedParameters(tuple(layers), tuple(last_conv), reason))
    return network


def declared(network):
    """The network's declaration, or None when its builder made none."""
    return getattr(network, _ATTRIBUTE, None)


def from_layer_names(network, names):
    """A declaration from layer names given by hand: their variables are shared, W is the kernel of the last
    layer with one (a named layer, or the last conv/dense inside it)."""
    names = [names] if isinstance(names, str) else list(names)
    layers = find_layers(network, names)
    kernels = [layer for layer in layers if hasattr(layer, "kernel")]
    if not kernels:
        inner = [sub for sub in walk_layers(layers[-1]) if hasattr(sub, "kernel")]
        kernels = inner[-1:]
    return SharedParameters(tuple(names), tuple(k.name for k in kernels[-1:]))


def find_layers(network, names):
    by_name = {layer.name: layer for layer in walk_layers(network)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"shared layer(s) {missing} are not layers of the network {network.name!r}")
    return [by_name[n] for n in names]


def shared_variables(network, spec):
    """The trainable variables of the declared shared layers, each once, in declaration order."""
    seen, out = set(), []
    for layer in find_layers(network, spec.layers):
        for variable in layer.trainable_variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out


def last_conv_kernels(network, spec):
    """GradNorm's W: the kernel of each declared last shared conv."""
    return [layer.kernel for layer in find_layers(network, spec.last_conv)]


def last_conv(models):
    """Name of the last plain convolution (keras Conv1D/2D/3D, not depthwise) inside ``models``, in build order."""
    convs = [layer for model in models for layer in walk_layers(model)
             if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D))]
    if not convs:
        raise ValueError(f"no convolution in {[m.name for m in models]}")
    return convs[-1].name


def walk_layers(layer):
    """Every layer below ``layer`` (nested models included), depth first, in build order."""
    for sub in getattr(layer, "layers", []):
        yield sub
        yield from walk_layers(sub)
