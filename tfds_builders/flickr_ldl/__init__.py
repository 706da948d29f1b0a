"""TFDS builder for Flickr_LDL; see README.md."""
