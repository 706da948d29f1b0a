"""Where the zoo keeps files it makes or downloads on a user's machine, and how it checks them."""
import hashlib
import os
import pathlib


def cache_dir():
    """$AFFECT_ZOO_HOME, else $KERAS_HOME/affect_zoo, else ~/.keras/affect_zoo."""
    if os.environ.get("AFFECT_ZOO_HOME"):
        return pathlib.Path(os.environ["AFFECT_ZOO_HOME"])
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return pathlib.Path(keras_home) / "affect_zoo"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
