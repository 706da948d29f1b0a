"""TFDS builder for Twitter_LDL; see README.md."""
