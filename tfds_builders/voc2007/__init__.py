"""TFDS builder for PASCAL VOC2007 multi-label classification; see README.md."""
