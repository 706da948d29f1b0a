"""TFDS builder for Emotion6; see README.md."""
