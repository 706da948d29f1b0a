"""Emotion sets placed on a circle, and the emotion vector of a distribution.

Yang et al. (CVPR 2021) put basic emotions on a circle as unit vectors so that a label distribution d maps to one
emotion vector e = Σ_j d_j·u_j: its length is the intensity r, its direction the type θ, and the half-plane it
falls in the polarity. The emotion set and its placement are data (an `EmotionCircle`), so a dataset with another
set only needs a new circle, never new code.
"""
import dataclasses
import math
import types

import numpy as np

# Below this length the emotion vector has no meaningful direction: the angle is reported as 0, the intensity as 0,
# and the polarity falls back to probability mass (see `emotion_vector`). 1e-6 is far above float32 rounding of a
# uniform distribution's vector (~1e-8) and far below any real distribution's length.
_R_MIN = 1e-6


@dataclasses.dataclass(frozen=True)
class EmotionCircle:
    """An emotion set with each emotion's direction on the circle and its polarity.

    names: the labels in index order (the order of a distribution's entries).
    angles: radians per name, or None for a name without direction (e.g. neutral): such an emotion contributes
        nothing to the emotion vector, so its mass only shrinks the intensity.
    positive: the names of positive emotions; every other name with a direction is negative, and a name without
        direction is neither.
    name: the key the circle is known by (configs store a built-in circle by this name).

    The positive and negative directions must be separable by a line through the centre, since polarity is read
    off the half-plane the emotion vector falls in; construction checks this (see `positive_normal`).
    """

    names: tuple
    angles: tuple
    positive: frozenset
    name: str

    def __post_init__(self):
        # Normalise containers so that equal circles compare (and hash) equal whatever sequences were passed in.
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "angles", tuple(None if a is None else float(a) for a in self.angles))
        object.__setattr__(self, "positive", frozenset(str(n) for n in self.positive))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"EmotionCircle name must be a non-empty string; got {self.name!r}")
        if not self.names:
            raise ValueError(f"EmotionCircle {self.name!r}: names is empty")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"EmotionCircle {self.name!r}: names must be unique; got {list(self.names)}")
        if len(self.angles) != len(self.names):
            raise ValueError(
                f"EmotionCircle {self.name!r}: angles has length {len(self.angles)} but names has length "
                f"{len(self.names)}; give one angle (or None) per name"
            )
        if any(a is not None and not math.isfinite(a) for a in self.angles):
            raise ValueError(f"EmotionCircle {self.name!r}: angles must be finite or None; got {list(self.angles)}")
        unknown = sorted(self.positive - set(self.names))
        if unknown:
            raise ValueError(
                f"EmotionCircle {self.name!r}: positive names {unknown} are not in names {list(self.names)}"
            )
        undirected = sorted(n for n, a in zip(self.names, self.angles) if a is None and n in self.positive)
        if undirected:
            raise ValueError(
                f"EmotionCircle {self.name!r}: positive names {undirected} have no angle; polarity is a half-plane, "
                "so a positive emotion needs a direction"
            )
        if not self.positive_mask().any() or not self.negative_mask().any():
            raise ValueError(
                f"EmotionCircle {self.name!r}: needs at least one positive and one negative emotion with a direction; "
                f"positive = {sorted(self.positive)}"
            )
        self.positive_normal()  # raises if no line through the centre separates the two polarities

    @property
    def size(self):
        """Number of emotions K (the length of a distribution over this set)."""
        return len(self.names)

    def index(self, name):
        """Index of `name` in the label order."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(
                f"{name!r} is not an emotion of circle {self.name!r}; names are {list(self.names)}"
            ) from None

    def is_positive(self, emotion):
        """Whether an emotion (given by name or by index) is positive."""
        if isinstance(emotion, (int, np.integer)):
            if not 0 <= emotion < self.size:
                raise ValueError(
                    f"emotion index {emotion} is out of range for circle {self.name!r} of size {self.size}"
                )
            emotion = self.names[emotion]
        self.index(emotion)
        return emotion in self.positive

    def unit_vectors(self):
        """(K, 2) float64 array of each emotion's unit vector (cos θ, sin θ); a zero row for no direction."""
        return np.array([(0.0, 0.0) if a is None else (math.cos(a), math.sin(a)) for a in self.angles])

    def positive_mask(self):
        """(K,) bool array: True for positive emotions."""
        return np.array([n in self.positive for n in self.names])

    def negative_mask(self):
        """(K,) bool array: True for emotions with a direction that are not positive."""
        return np.array([a is not None and n not in self.positive for n, a in zip(self.names, self.angles)])

    def positive_normal(self):
        """(2,) unit normal of the polarity line, pointing into the positive half-plane.

        Derived from the data as the maximum-margin line through the centre: flip each negative direction by π, so
        that separating the polarities means fitting every flipped direction into one open half-plane; the smallest
        arc holding them all must then be shorter than π, and the normal is its bisector, which leaves every emotion
        as far from the line as possible. For both MIKELS8 and EMOTION6 this is (-1, 0). (The normalised sum of the
        positive vectors is not enough for a lopsided set: for EMOTION6 it would put fear on the positive side.)
        """
        polarities = zip(self.angles, self.positive_mask(), self.negative_mask())
        flipped = [a if pos else a + math.pi for a, pos, neg in polarities if pos or neg]
        ring = np.sort(np.mod(flipped, 2 * math.pi))
        gaps = np.diff(np.append(ring, ring[0] + 2 * math.pi))
        widest = int(np.argmax(gaps))
        if gaps[widest] <= math.pi + 1e-9:
            raise ValueError(
                f"EmotionCircle {self.name!r}: no line through the centre separates the positive emotions "
                f"{sorted(self.positive)} from the negative ones; polarity is read off a half-plane"
            )
        middle = ring[(widest + 1) % len(ring)] + (2 * math.pi - gaps[widest]) / 2
        return np.array([math.cos(middle), math.sin(middle)])

    def to_config(self):
        """JSON-able fields; `EmotionCircle.from_config` rebuilds an equal circle."""
        return {
            "name": self.name,
            "names": list(self.names),
            "angles": list(self.angles),
            "positive": sorted(self.positive),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _placed(name, names, placement, positive):
    """Circle whose angles come from named placements (name → radians; a name absent from it has no direction)."""
    return EmotionCircle(names=names, angles=[placement.get(n) for n in names], positive=positive, name=name)


MIKELS8 = _placed(
    "mikels8",
    names=("amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"),
    placement={
        n: (2 * i + 1) * math.pi / 8
        for i, n in enumerate(("sadness", "fear", "excitement", "awe", "contentment", "amusement", "anger", "disgust"))
    },
    positive=("amusement", "awe", "contentment", "excitement"),
)
"""Mikels' 8 emotions in FI's label order (amusement, anger, awe, contentment, disgust, excitement, fear, sadness).

Placed on the circle in the order sadness, fear, excitement, awe, contentment, amusement, anger, disgust at angles
(2i+1)·π/8, the placement of the method's public polar-coordinate code; the positive emotions then fill the
half-plane cos θ < 0, so the polarity normal is (-1, 0). Used by FI, UAE, Flickr_LDL and Twitter_LDL (builders map
their own label orders to this one by name).
"""

EMOTION6 = _placed(
    "emotion6",
    names=("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"),
    placement={
        "sadness": math.pi / 8,
        "fear": 3 * math.pi / 8,
        "surprise": 5 * math.pi / 8,
        "joy": math.pi,
        "anger": 13 * math.pi / 8,
        "disgust": 15 * math.pi / 8,
    },
    positive=("joy", "surprise"),
)
"""Emotion6's 7 labels in the order of its ground_truth.txt (anger, disgust, fear, joy, sadness, surprise, neutral).

Emotion6 has no published circle, so this placement is a choice: each emotion reuses the MIKELS8 slot of its
closest analogue — sadness π/8, fear 3π/8, anger 13π/8, disgust 15π/8 as in MIKELS8, surprise 5π/8 (excitement's
slot, positive), joy π (the pole of the positive half). Neutral has no direction: it adds nothing to the emotion
vector and only shrinks the intensity. Positive = joy, surprise. The polarity normal (see
`EmotionCircle.positive_normal`) is (-1, 0) as for MIKELS8: positive emotions are those with cos θ < 0.
"""

# Built-in circles by name; layers and losses store one of these in their config by name, any other by its fields.
CIRCLES = types.MappingProxyType({c.name: c for c in (MIKELS8, EMOTION6)})


def get_circle(identifier):
    """The EmotionCircle for a built-in name, a `to_config` dict, or a circle (returned as is)."""
    if isinstance(identifier, EmotionCircle):
        return identifier
    if isinstance(identifier, str):
        if identifier not in CIRCLES:
            raise ValueError(f"circle {identifier!r} is not built in; known circles are {sorted(CIRCLES)}")
        return CIRCLES[identifier]
    if isinstance(identifier, dict):
        return EmotionCircle.from_config(identifier)
    raise ValueError(f"circle must be a name, a config dict or an EmotionCircle; got {identifier!r}")


def serialize_circle(circle):
    """Config value for a circle: its name if it is the built-in circle of that name, else its fields."""
    circle = get_circle(circle)
    return circle.name if CIRCLES.get(circle.name) == circle else circle.to_config()


def _prepare(dist, circle, arg):
    """(namespace, dist, circle) with dist checked against the circle: NumPy for arrays/lists, keras.ops otherwise.

    Working against the shared NumPy / keras.ops API keeps one formula for both, and NumPy in gives NumPy out.
    Static shapes are always checked; values (no negatives) only for NumPy, since a graph tensor has none yet.
    Keras is imported only for tensors, so the circles and NumPy geometry load without TensorFlow (the registry
    and the CLI's ``list``/``info`` read task definitions).
    """
    circle = get_circle(circle)
    if isinstance(dist, (np.ndarray, np.generic, list, tuple)):
        xp, dist = np, np.asarray(dist)
        if not np.issubdtype(dist.dtype, np.floating):
            dist = dist.astype(np.float64)
    else:
        import keras

        xp, dist = keras.ops, keras.ops.convert_to_tensor(dist)
        if not keras.backend.is_float_dtype(dist.dtype):
            dist = keras.ops.cast(dist, keras.config.floatx())
    shape = tuple(dist.shape)
    if len(shape) not in (1, 2) or shape[-1] not in (None, circle.size):
        raise ValueError(
            f"{arg} must have shape (K,) or (B, K) with K = {circle.size} (circle {circle.name!r}: "
            f"{', '.join(circle.names)}); got shape {shape}"
        )
    if xp is np and np.any(dist < 0):
        raise ValueError(
            f"{arg} must be probabilities (no negative entries); got minimum {dist.min()} in shape {shape}"
        )
    return xp, dist, circle


def _constant(xp, value, like):
    """A circle constant (NumPy array) in the namespace and dtype of `like`."""
    return value.astype(like.dtype) if xp is np else xp.convert_to_tensor(value, dtype=like.dtype)


def soft_polarity(dist, circle=MIKELS8):
    """Differentiable polarity P(positive) − P(negative) ∈ [-1, 1] of a distribution (B, K) or (K,).

    Emotions without direction (neutral) count for neither side. The losses use it as the predicted polarity,
    where the hard ±1 of `emotion_vector` would give no gradient.
    """
    xp, dist, circle = _prepare(dist, circle, "dist")
    sides = circle.positive_mask().astype(float) - circle.negative_mask().astype(float)
    return xp.matmul(dist, _constant(xp, sides, dist))


def emotion_vector(dist, circle=MIKELS8):
    """(polarity, angle, intensity) of the emotion vector e = Σ_j d_j·u_j of a distribution (B, K) or (K,).

    NumPy in → NumPy out; a tensor in → tensors out (differentiable where it makes sense). Each output has the
    batch shape: (B,) for (B, K), scalar for (K,).
    - intensity r = ‖e‖ ∈ [0, 1] for a probability distribution.
    - angle θ = atan2(e_y, e_x) ∈ (-π, π].
    - polarity +1.0 if e lies in the positive half-plane (e·n > 0, n = `circle.positive_normal()`), else -1.0.
    Degenerate vectors (a choice; never NaN): when r < 1e-6 the direction is undefined, so θ = 0 and r = 0 are
    reported, and the `tf.where`-style guards keep the gradients of θ and r finite (zero) there. When e·n is within
    1e-6 of 0 (this includes r ≈ 0, and vectors on the polarity line) the half-plane cannot decide, so polarity is
    +1 if P(positive) − P(negative) ≥ 0, else -1.
    """
    xp, dist, circle = _prepare(dist, circle, "dist")
    e = xp.matmul(dist, _constant(xp, circle.unit_vectors(), dist))
    ex, ey = e[..., 0], e[..., 1]
    r2 = ex * ex + ey * ey
    defined = r2 >= _R_MIN * _R_MIN
    intensity = xp.where(defined, xp.sqrt(xp.where(defined, r2, 1)), 0)
    angle = xp.where(defined, xp.arctan2(xp.where(defined, ey, 0), xp.where(defined, ex, 1)), 0)
    side = xp.matmul(e, _constant(xp, circle.positive_normal(), dist))
    mass = soft_polarity(dist, circle)
    positive = xp.where(xp.abs(side) >= _R_MIN, side > 0, mass >= 0)
    one = xp.ones_like(side)
    polarity = xp.where(positive, one, -one)
    return polarity, angle, intensity
