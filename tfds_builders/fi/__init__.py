"""TFDS builder for FI; see README.md."""
