"""Offline TFDS builders; importing this package registers them with TFDS."""

from genimg_jax.data.builders.bundled_mnist import BundledMnist
from genimg_jax.data.builders.shapes import Shapes

BUNDLED = ("bundled_mnist", "shapes")  # TFDS names of the data sets built here without internet

__all__ = ["BUNDLED", "BundledMnist", "Shapes"]
