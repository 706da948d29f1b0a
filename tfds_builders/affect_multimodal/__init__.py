"""TFDS builder for multimodal (image, text, tags) emotion posts; see README.md."""
