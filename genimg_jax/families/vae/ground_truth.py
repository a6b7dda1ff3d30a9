"""The known generative process of a data set, for the disentanglement scores
(`metrics.disentanglement.GroundTruth`): the procedural `shapes` renders any factors directly;
a fully factorial TFDS data set whose every factor combination is one example (`dsprites`:
737,280 images of 5 factors; `shapes3d`: 480,000 of 6) is looked up in its prepared split, by
the `label_*` class labels of its examples, through the same TFDS path as its training data.
"""

import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from genimg_jax.data import pipeline
from genimg_jax.metrics.disentanglement import SHAPES, GroundTruth

FACTORIAL = ("dsprites", "shapes3d")  # TFDS data sets that hold every factor combination once
INDEX_FILE = "genimg_factor_index.npy"  # beside the prepared split: factors -> example


def has_known_factors(data: ml_collections.ConfigDict) -> bool:
    """Whether the run's data has a generative process the scores can query."""
    return data.name == "shapes" or data.name in FACTORIAL


def for_data(data: ml_collections.ConfigDict) -> GroundTruth:
    """The generative process of `data` (see the module doc)."""
    if data.name == "shapes":
        return SHAPES
    if data.name not in FACTORIAL:
        raise ValueError(f"data.name={data.name!r} has no known factors; use shapes or {FACTORIAL}")
    return factorial(pipeline.prepare_data(data), data.train_split)


def factor_names(builder: tfds.core.DatasetBuilder) -> list[str]:
    """The builder's `label_*` class-label features, in its feature order."""
    features = builder.info.features
    return [k for k in features if k.startswith("label_")]


def factorial(builder: tfds.core.DatasetBuilder, split: str = "train") -> GroundTruth:
    """A GroundTruth over a prepared fully factorial split: factors are drawn uniformly, and an
    observation is the example holding that combination (an index of all of them is made once
    and kept beside the split). Raises ValueError when a combination is missing or repeated."""
    names = factor_names(builder)
    sizes = tuple(builder.info.features[k].num_classes for k in names)
    records = builder.as_data_source(split=split)
    index = _factor_index(builder, records, split, names, sizes)

    def sample_factors(rng: np.random.Generator, n: int) -> np.ndarray:
        return np.stack([rng.integers(0, size, n) for size in sizes], axis=1)

    def observations(factors: np.ndarray) -> np.ndarray:
        rows = index[np.ravel_multi_index(tuple(np.asarray(factors).T), sizes)]
        images = np.stack([e["image"] for e in records.__getitems__([int(r) for r in rows])])
        return images.astype(np.float32) / 255.0

    return GroundTruth(sizes, sample_factors, observations)


def _factor_index(builder, records, split: str, names: list[str], sizes: tuple) -> np.ndarray:
    """int64 [Π sizes]: the example of each factor combination (raveled), read once."""
    path = os.path.join(str(builder.data_dir), f"{split}-{INDEX_FILE}")
    if os.path.exists(path):
        return np.load(path)
    index = np.full(int(np.prod(sizes)), -1, np.int64)
    chunk = 4096
    for start in range(0, len(records), chunk):
        rows = list(range(start, min(start + chunk, len(records))))
        examples = records.__getitems__(rows)
        labels = np.array([[e[k] for k in names] for e in examples]).T
        index[np.ravel_multi_index(tuple(labels), sizes)] = rows
    if len(records) != len(index) or (index < 0).any():
        raise ValueError(
            f"{builder.name} {split!r} is not fully factorial: {len(records)} examples for "
            f"{len(index)} combinations of {dict(zip(names, sizes, strict=True))}"
        )
    np.save(path, index)
    return index
