"""Which scores a run's best checkpoint can be chosen by (`eval.best_metric`), and whether lower
("min") or higher ("max") is better for each."""

import ml_collections
import numpy as np

from genimg_jax.data.builders import shapes

GAN_SCORES = {
    "fid": "min",
    "kid": "min",
    "precision": "max",
    "recall": "max",
    "inception_score": "max",
}
VAE_SCORES = {
    "neg_elbo": "min",
    "iwae": "min",
    "neg_elbo_bits_per_dim": "min",
    "iwae_bits_per_dim": "min",
}
DISENTANGLEMENT_SCORES = {
    "mig": "max",
    "dci_disentanglement": "max",
    "dci_completeness": "max",
    "dci_informativeness": "max",
}


def has_disentanglement(data: ml_collections.ConfigDict) -> bool:
    """Whether the data carry known factors at the geometry they were generated at."""
    return data.name == "shapes" and data.image_size == shapes.IMAGE_SIZE


def score_modes(kind: str, data: ml_collections.ConfigDict) -> dict[str, str]:
    """{score: "min" | "max"} of the scores that evaluation reports for a family kind and data."""
    if kind == "gan":
        return GAN_SCORES
    return VAE_SCORES | (DISENTANGLEMENT_SCORES if has_disentanglement(data) else {})


def is_better(mode: str, value: float, best: float | None) -> bool:
    """Whether `value` improves on `best` (None: nothing yet) in direction `mode`; a non-finite
    value never does."""
    if not np.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)
