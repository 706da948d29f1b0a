"""Reusable Keras layers of the zoo's methods. Two-branch layers take and return a pair [x_a, x_e]."""
from affect_zoo.layers.afi import AdaptiveFeatureInteraction
from affect_zoo.layers.attention import AlphaFusion, LabelAttention, SemanticDependency
from affect_zoo.layers.circle_head import CircularEmotionHead
from affect_zoo.layers.mixing import NDDR, CrossStitch
from affect_zoo.layers.se import SqueezeExcitation

__all__ = ["AdaptiveFeatureInteraction", "CrossStitch", "NDDR", "SqueezeExcitation", "CircularEmotionHead",
           "LabelAttention", "SemanticDependency", "AlphaFusion"]
