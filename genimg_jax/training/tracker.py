"""Scores during training: at each evaluation the run's scores are logged (metrics.jsonl and
TensorBoard as `eval/<score>`, and `eval_<step>.json`), and the state is saved to
`checkpoints_best/` when `eval.best_metric` improves on every earlier evaluation of the run.

A resumed run forgets best saves made after its restored step (they belong to a future that was
discarded), so it keeps the same best checkpoint as an uninterrupted run.
"""

import json
import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from genimg_jax import families
from genimg_jax.runtime import parallel
from genimg_jax.training import best
from genimg_jax.training import checkpoint as checkpoint_lib


def make_scorer(config: ml_collections.ConfigDict) -> Callable[..., dict[str, float]]:
    """score(state) -> {name: float} of this config's family (its `make_scorer`), with
    `config.eval`'s settings and latents/noise from `config.seed`: what the trainer logs at
    each evaluation and `genimg eval` reports."""
    score = families.of(config).make_scorer(config)
    return lambda state: {k: float(v) for k, v in score(state).items()}


def write_scores(workdir: str, step: int, scores: dict[str, float], tag: str = "") -> str:
    """`eval_<step>[_<tag>].json` in the workdir: {"step": step, **scores}; returns its path."""
    path = os.path.join(workdir, f"eval_{step:06d}{'_' + tag if tag else ''}.json")
    with open(path, "w") as f:
        json.dump({"step": step, **scores}, f, indent=2)
    return path


def forget_future_best(workdir: str, start: int) -> None:
    """Deletes the best saves after `start`, the step a run resumes from (see the module doc).
    Every process takes process 0's view of whether there are any: opening the folder is a
    barrier of all processes, and a process that looked after process 0 had made the folder
    for this run would otherwise wait at it alone."""
    exists = os.path.isdir(os.path.join(workdir, checkpoint_lib.BEST))
    if jax.process_count() > 1:
        exists = bool(multihost_utils.broadcast_one_to_all(np.int32(exists)))
    if exists:
        keeper = checkpoint_lib.Checkpoints(workdir, 1, checkpoint_lib.BEST)
        keeper.delete_after(start)
        keeper.close()


class ScoreTracker:
    """Scores a run's states at its evaluations and keeps the best one (see the module doc)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.workdir = workdir
        self.is_writer = jax.process_index() == 0
        self.score = make_scorer(config)  # the one-off work (feature net, references)
        self.metric = config.eval.best_metric
        self.keeper, self.best = None, None
        if self.metric:
            self.mode = families.of(config).score_modes(config.data)[self.metric]
            self.keeper = checkpoint_lib.Checkpoints(
                workdir, 1, checkpoint_lib.BEST, best=(self.metric, self.mode)
            )
            kept = self.keeper.best()
            self.best = None if kept is None else (kept[0], float(kept[1][self.metric]))

    def __call__(self, step: int, state, writer) -> dict[str, float]:
        """Scores `state` (replicated global arrays) at `step`: logs them, saves it as the best
        checkpoint if it is, and returns the scores. No other save may be in flight."""
        scores = self.score(parallel.to_host(state))
        if jax.process_count() > 1:  # every process saves the best together: one decision
            values = np.asarray([scores[k] for k in sorted(scores)])
            agreed = multihost_utils.broadcast_one_to_all(values)
            scores = dict(zip(sorted(scores), map(float, agreed), strict=True))
        if self.is_writer:
            write_scores(self.workdir, step, scores)
            writer.write(step, {f"eval/{k}": v for k, v in scores.items()})
        if self.keeper is not None:
            value = scores[self.metric]
            if best.is_better(self.mode, value, None if self.best is None else self.best[1]):
                self.keeper.save(step, state, metrics={self.metric: value})
                self.keeper.wait()  # before the run's own save of this step starts
                self.best = (step, value)
        return scores

    def summary(self) -> dict:
        """{"best_step", "best_metric", "best_value"} for summary.json ({} without a keeper)."""
        if self.best is None:
            return {}
        return {"best_step": self.best[0], "best_metric": self.metric, "best_value": self.best[1]}

    def close(self) -> None:
        """Waits for a pending best save (raising if it failed)."""
        if self.keeper is not None:
            self.keeper.close()

    def abandon(self) -> None:
        """Releases the keeper after a failure, without raising again."""
        if self.keeper is not None:
            self.keeper.abandon()
