"""Choosing a run's best checkpoint by a score (`eval.best_metric`; each family's `score_modes`
says whether lower ("min") or higher ("max") is better), and whether the data carry the known
factors that disentanglement scores need."""

import ml_collections
import numpy as np


def has_disentanglement(data: ml_collections.ConfigDict) -> bool:
    """Whether the data carry known factors (the shapes data set's generative process; its
    images are fitted to the model's size as the pipeline fits them)."""
    return data.name == "shapes"


def is_better(mode: str, value: float, best: float | None) -> bool:
    """Whether `value` improves on `best` (None: nothing yet) in direction `mode`; a non-finite
    value never does."""
    if not np.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)
