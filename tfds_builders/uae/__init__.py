"""TFDS builder for UAE (images with aesthetic and emotion labels); see README.md."""
