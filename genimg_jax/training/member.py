"""One run in its workdir, and all of its side effects: restoring its latest good checkpoint,
its record (config.json, run_record.json), its metric rows, the divergence check, its sample
grids, its scores and best checkpoint, its checkpoints and its summary. The training loop
(`trainer.py`) drives K >= 1 members and only decides when each of these happens."""

import functools
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core import state as state_lib
from genimg_jax.core.errors import CheckpointError, DivergenceError
from genimg_jax.data import pipeline
from genimg_jax.runtime import parallel
from genimg_jax.training import checkpoint as checkpoint_lib
from genimg_jax.training import guard as guard_lib
from genimg_jax.training import outputs as log_lib
from genimg_jax.training import tracker as tracker_lib
from genimg_jax.training.checkpoint import Checkpoints


def train_batches(config: ml_collections.ConfigDict) -> pipeline.Batches:
    """This process's deterministic batches of the training split."""
    data_cfg = config.data
    if jax.process_index() == 0:  # process 0 prepares first: processes sharing a dir never race
        pipeline.prepare_data(data_cfg)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("genimg: data prepared")
    return pipeline.Batches(
        pipeline.load_data_split(data_cfg, data_cfg.train_split),
        seed=config.seed,
        batch_size=config.train.batch_size,
        image_size=data_cfg.image_size,
        channels=data_cfg.channels,
        value_range=families.of(config).value_range,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        binarize=data_cfg.binarize,
        draws=families.of(config).real_batches_per_step(config),
    )


def restore_latest(
    config: ml_collections.ConfigDict, checkpoints: Checkpoints, mesh: Mesh
) -> tuple[Any, int]:
    """(state, step) of the latest readable checkpoint in `checkpoints` as global arrays
    replicated over `mesh`, with the config's hyperparameters written in (a run resumed with
    overrides: the config wins); (a fresh state, 0) when there is none. A checkpoint is read
    into the state's abstract shapes: the networks are initialised only for a fresh start."""
    if checkpoints.latest_step() is None:
        return families.initial_state(config, mesh), 0
    hint = ""
    if jax.process_index() == 0:
        hint = config_lib.saved_config_hint(config, checkpoints.workdir)
    template = families.abstract_initial_state(config, mesh)
    state, step = checkpoints.restore_latest_good(template, hint)
    state = parallel.replicate_global(families.apply_hparams(state, config), mesh)
    return state, step


def restore(config: ml_collections.ConfigDict, workdir: str, which: str = "latest") -> Any:
    """The run's latest checkpointed state, or with which="best" the best-scored one
    (`checkpoints_best/`, kept when the run evaluated with `eval.best_metric` set), on one
    device (on every device of a multi-process run, which must take part): what reads it
    (sampling, scoring, encoding) computes one replicated program, which more devices would
    only repeat, as training scores its host copy on one device. Raises CheckpointError naming
    the fix when there is none."""
    config_lib.validate(config)
    if which not in ("latest", "best"):
        raise CheckpointError(f"which={which!r}: use 'latest' or 'best'")
    folder = checkpoint_lib.LATEST if which == "latest" else checkpoint_lib.BEST
    if not os.path.isdir(os.path.join(workdir, folder)):
        raise CheckpointError(
            f"{os.path.join(workdir, folder)} holds no checkpoint; "
            + (
                f"train first: genimg train --config CONFIG --workdir {workdir}"
                if which == "latest"
                else "the best one is kept by runs that score themselves "
                "(eval.scores=True, eval.best_metric set)"
            )
        )
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints, folder)
    try:
        mesh = parallel.make_mesh(1 if jax.process_count() == 1 else 0)
        state, step = restore_latest(config, checkpoints, mesh)
        if step == 0:
            raise CheckpointError(f"{checkpoints.directory} holds no checkpoint")
    finally:
        checkpoints.abandon()
    return state


def write_record(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Saves the resolved config and what produced the run into the workdir."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    with open(os.path.join(workdir, "run_record.json"), "w") as f:
        json.dump(log_lib.run_record(), f, indent=2)


def write_summary(
    workdir: str,
    step: int,
    seconds: float,
    metrics: dict,
    scores: dict | None = None,
    compile_seconds: float | None = None,
) -> None:
    """`summary.json`: the finished run's last metrics, its last scores (with the best
    checkpoint's step and score), its wall time and the part of it spent compiling the training
    step (`compile_seconds`, where the loop timed it), both summed over resumes."""
    path = os.path.join(workdir, "summary.json")
    before = {}
    if os.path.exists(path):
        with open(path) as f:
            before = json.load(f)
    times = {"wall_time_sec": before.get("wall_time_sec", 0.0) + seconds}
    if compile_seconds is not None or "compile_sec" in before:
        times["compile_sec"] = before.get("compile_sec", 0.0) + (compile_seconds or 0.0)
    summary = {
        "step": step,
        **times,
        "metrics": {k: float(v) for k, v in metrics.items()},
        **({"eval": scores} if scores else {}),
    }
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)


@functools.cache
def grid_drawer(family: families.Family) -> Callable:
    """The jitted function drawing a family's sample grids (one per process)."""
    return jax.jit(family.sample_grids)


class Member:
    """One run: `config` trained in `workdir` over `mesh`. Constructing it restores the latest
    readable checkpoint (`state`, `start`); `begin` opens its logs before the first step;
    `finish` closes them after the last; `close` releases everything, also after a failure.
    `label` ("member NAME" in a sweep) starts its error messages."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, mesh: Mesh, label=""):
        self.config, self.workdir, self.mesh, self.label = config, workdir, mesh, label
        self.family = families.of(config)
        self.is_writer = jax.process_index() == 0
        self.checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
        self.state, self.start = restore_latest(config, self.checkpoints, mesh)
        if config.eval.scores:
            tracker_lib.forget_future_best(workdir, self.start)
        self.last_saved = self.start
        self.last_values: dict = {}
        self.last_scores: dict = {}
        self.writer, self.tracker = None, None
        self.network_names = list(self.family.networks(self.state))

    def begin(self) -> Iterator[dict]:
        """Writes the run's record, opens its metric log and scorer; returns its batches from
        the start step on."""
        config = self.config
        if self.is_writer:
            write_record(config, self.workdir)
        self.writer = log_lib.MetricWriter(self.workdir, self.start, enabled=self.is_writer)
        keys = state_lib.run_keys(config.seed)
        self.train_key = keys["train"]
        self.grid_inputs = parallel.replicate_global(
            self.family.grid_inputs(config, keys["sample"]), self.mesh
        )
        self.tracker = (
            tracker_lib.ScoreTracker(config, self.workdir) if config.eval.scores else None
        )
        return train_batches(config).iterate(self.start, config.train.steps)

    def check_finite(self, guard: dict, metric_names: list[str]) -> None:
        """Raises DivergenceError if the (host) guard saw a non-finite value."""
        watch = not self.config.train.skip_nonfinite
        found = guard_lib.describe(
            guard, guard_lib.watched_names(self.network_names, metric_names, watch)
        )
        if found:
            step, bad = found
            raise DivergenceError(
                f"{self.label + ': ' if self.label else ''}non-finite {', '.join(bad)} at step "
                f"{step}. The last checkpoint, step {self.last_saved or 'none'} in "
                f"{self.checkpoints.directory}, is kept and holds finite values; nothing after "
                f"it was saved. Lower the learning rate, set train.grad_clip_norm > 0, or set "
                f"train.skip_nonfinite=True to skip such updates."
            )

    def log(self, step: int, values: dict) -> None:
        """Writes a metric row."""
        self.writer.write(step, values)
        self.last_values = values

    def evaluate(self, state: Any, step: int) -> None:
        """Sample grids (PNG and TensorBoard) and, with `eval.scores`, scores and the best
        checkpoint; `state`: global arrays replicated over the mesh."""
        grids = parallel.to_host(grid_drawer(self.family)(state, **self.grid_inputs))
        if self.is_writer:
            for name, images in grids.items():
                grid = log_lib.image_grid(images, self.family.value_range)
                path = os.path.join(self.workdir, "samples", f"{name}_{step:06d}.png")
                log_lib.save_png(grid, path)
                self.writer.write_image(step, name, grid)
        if self.tracker is not None:
            self.checkpoints.wait()  # the tracker's best save must not overlap a pending one
            self.last_scores = self.tracker(step, state, self.writer) | self.tracker.summary()

    def save(self, step: int, state: Any) -> None:
        """Starts saving the checkpoint of `step` (asynchronously)."""
        self.checkpoints.save(step, state)
        self.last_saved = step

    def finish(self, step: int, seconds: float, compile_seconds: float | None) -> None:
        """Waits for the last saves (raising if one failed) and writes summary.json."""
        self.checkpoints.close()
        if self.tracker is not None:
            self.tracker.close()
        if self.is_writer:
            write_summary(
                self.workdir,
                step,
                seconds,
                self.last_values,
                self.last_scores,
                compile_seconds,
            )

    def close(self) -> None:
        """Releases the logs and checkpointers, without raising again after a failure."""
        if self.writer is not None:
            self.writer.close()
        self.checkpoints.abandon()
        if self.tracker is not None:
            self.tracker.abandon()
