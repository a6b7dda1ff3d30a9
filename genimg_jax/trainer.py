"""The training loop shared by every family: restore or init, then step, log, sample and
checkpoint until `train.steps`. Data and randomness are functions of (seed, step), so a resumed
run continues exactly where an uninterrupted one would be."""

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from genimg_jax import config as config_lib
from genimg_jax import logging as log_lib
from genimg_jax import models, parallel, sampling, steps
from genimg_jax import state as state_lib
from genimg_jax.checkpoint import Checkpoints
from genimg_jax.data import pipeline

VALUE_RANGE = {"gan": (-1.0, 1.0), "vae": (0.0, 1.0)}


def value_range(config: ml_collections.ConfigDict) -> tuple[float, float]:
    """Pixel range the family trains on: [-1, 1] for GANs (tanh), [0, 1] for VAEs."""
    return VALUE_RANGE[models.get_family(config.model.family).kind]


def run_keys(seed: int) -> dict[str, jax.Array]:
    """Independent keys (raw uint32 [2], easy to move between hosts) for initialisation,
    training steps and sample grids."""
    init, train, sample = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {"init": init, "train": train, "sample": sample}


def initial_state(config: ml_collections.ConfigDict, mesh: Mesh) -> Any:
    """The freshly initialised state as global arrays replicated over the mesh: the layout that
    checkpoints are written and restored in, whatever the strategy or device count."""
    state = state_lib.create_state(config, run_keys(config.seed)["init"])
    return parallel.replicate_global(state, mesh)


class Strategy(NamedTuple):
    """How the loop places a state and a batch on devices and runs the compiled step."""

    place_state: Callable[[Any], Any]  # replicated global state -> the step's layout
    place_batch: Callable[[dict], Any]  # this process's rows -> the step's layout
    step: Callable  # (placed state, placed batch, key) -> (placed state, metrics)
    gather_state: Callable[[Any], Any]  # the step's layout -> replicated global state
    host_metrics: Callable[[Any], dict]  # metrics -> NumPy scalars


def make_strategy(config: ml_collections.ConfigDict, mesh: Mesh) -> Strategy:
    """`parallel.strategy`: "jit" (global arrays sharded over the mesh) or "pmap" (the same
    step mapped over local devices with cross-device means). Both compile the step once."""
    if config.parallel.strategy == "jit":
        step = jax.jit(
            steps.make_train_step(config),
            donate_argnums=0,
            out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
        )
        return Strategy(
            place_state=lambda s: s,
            place_batch=functools.partial(parallel.global_batch, mesh=mesh),
            step=step,
            gather_state=lambda s: s,
            host_metrics=parallel.to_host,
        )
    step = jax.pmap(
        steps.make_train_step(config, axis_name=parallel.AXIS),
        axis_name=parallel.AXIS,
        in_axes=(0, 0, None),
        donate_argnums=0,
        devices=parallel.local_devices(mesh),
    )
    return Strategy(
        place_state=functools.partial(parallel.pmap_replicate, mesh=mesh),
        place_batch=functools.partial(parallel.pmap_shard, mesh=mesh),
        step=step,
        gather_state=functools.partial(parallel.pmap_unreplicate, mesh=mesh),
        host_metrics=lambda m: jax.tree.map(lambda x: np.asarray(x[0]), m),
    )


def write_record(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Saves the resolved config and what produced the run into the workdir."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    with open(os.path.join(workdir, "run_record.json"), "w") as f:
        json.dump(log_lib.run_record(), f, indent=2)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Trains `config` in `workdir` (resuming from its latest checkpoint); returns the final
    state as replicated global arrays."""
    config_lib.validate(config)
    parallel.set_deterministic_gpu_ops(config.deterministic)
    parallel.initialize_distributed(config.parallel)
    kind = models.get_family(config.model.family).kind
    mesh = parallel.make_mesh(config.parallel.num_devices)
    parallel.check_batch_size(config.train.batch_size, mesh)
    is_writer = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)

    data_cfg = config.data
    if is_writer:  # process 0 prepares first, so processes sharing a data dir do not race
        pipeline.prepare(data_cfg.name, data_cfg.data_dir)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("genimg: data prepared")
    train_source = pipeline.load_split(data_cfg.name, data_cfg.train_split, data_cfg.data_dir)
    batches = pipeline.Batches(
        train_source,
        seed=config.seed,
        batch_size=config.train.batch_size,
        image_size=data_cfg.image_size,
        channels=data_cfg.channels,
        value_range=value_range(config),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    state = initial_state(config, mesh)
    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
    start = checkpoints.latest_step() or 0
    if start:
        state = checkpoints.restore(state, start)
    if is_writer:
        write_record(config, workdir)
    writer = log_lib.MetricWriter(workdir, start_step=start, enabled=is_writer)

    keys = parallel.replicate_global(run_keys(config.seed), mesh)
    grid_inputs = parallel.replicate_global(_grid_inputs(config, kind, keys["sample"]), mesh)
    draw_grids = jax.jit(functools.partial(sampling.sample_grids, kind=kind))
    strategy = make_strategy(config, mesh)

    def evaluate(global_state: Any, step: int) -> None:
        grids = parallel.to_host(draw_grids(global_state, **grid_inputs))
        if is_writer:
            for name, images in grids.items():
                grid = log_lib.image_grid(images, value_range(config))
                log_lib.save_png(grid, os.path.join(workdir, "samples", f"{name}_{step:06d}.png"))
                writer.write_image(step, name, grid)

    total = config.train.steps
    progress = tqdm(
        total=total,
        initial=start,
        disable=not is_writer,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
    )
    placed = strategy.place_state(state)
    last_time, last_step = time.perf_counter(), start
    for step, local_batch in enumerate(batches.iterate(start, total), start=start):
        placed, metrics = strategy.step(placed, strategy.place_batch(local_batch), keys["train"])
        done = step + 1
        progress.update(1)
        if done % config.train.log_every == 0 or done == total:
            values = strategy.host_metrics(metrics)  # the loop's only per-interval host sync
            now = time.perf_counter()
            values["steps_per_sec"] = (done - last_step) / (now - last_time)
            last_time, last_step = now, done
            writer.write(done, values)
            progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
        is_eval = done % config.eval.every == 0 or done == total
        is_checkpoint = done % config.train.checkpoint_every == 0 or done == total
        if is_eval or is_checkpoint:
            state = strategy.gather_state(placed)
            if is_eval:
                evaluate(state, done)
            if is_checkpoint:
                checkpoints.save(done, state)
    progress.close()
    checkpoints.close()
    writer.close()
    return strategy.gather_state(placed)


def _grid_inputs(config: ml_collections.ConfigDict, kind: str, key: jax.Array) -> dict:
    """Fixed inputs of the sample grids: latents, and for VAEs the first evaluation images."""
    n = config.eval.num_samples
    inputs = {"z": sampling.latents(key, n, config.model.latent_dim), "x": None}
    if kind == "vae":
        data = config.data
        source = pipeline.load_split(data.name, data.eval_split, data.data_dir)
        images = source.get(np.arange(min(n // 2, len(source))))["image"]
        images = pipeline.fit_images(images, data.image_size, data.channels)
        inputs["x"] = pipeline.scale_images(images, value_range(config))
    return inputs
