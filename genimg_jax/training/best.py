"""Choosing a run's best checkpoint by a score (`eval.best_metric`; each family's `score_modes`
says whether lower ("min") or higher ("max") is better)."""

import numpy as np


def is_better(mode: str, value: float, best: float | None) -> bool:
    """Whether `value` improves on `best` (None: nothing yet) in direction `mode`; a non-finite
    value never does."""
    if not np.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)
