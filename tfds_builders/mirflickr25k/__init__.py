"""TFDS builder for MIRFLICKR-25000; see README.md."""
