"""The training loop shared by every family: restore or init, then step, log, sample and
checkpoint until `train.steps`. Data and randomness are functions of (seed, step), so a resumed
run continues exactly where an uninterrupted one would be."""

import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
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
    """Independent keys for initialisation, training steps and sample grids."""
    init, train, sample = jax.random.split(jax.random.key(seed), 3)
    return {"init": init, "train": train, "sample": sample}


def initial_state(config: ml_collections.ConfigDict, mesh) -> object:
    """The freshly initialised state, replicated over the mesh."""
    state = state_lib.create_state(config, run_keys(config.seed)["init"])
    return jax.device_put(state, parallel.replicated(mesh))


def write_record(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Saves the resolved config and what produced the run into the workdir."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    with open(os.path.join(workdir, "run_record.json"), "w") as f:
        json.dump(log_lib.run_record(), f, indent=2)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Trains `config` in `workdir` (resuming from its latest checkpoint); returns the state."""
    config_lib.validate(config)
    kind = models.get_family(config.model.family).kind
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    is_writer = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)

    data_cfg = config.data
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

    keys = run_keys(config.seed)
    grid_inputs = _grid_inputs(config, kind, keys["sample"])
    draw_grids = jax.jit(functools.partial(sampling.sample_grids, kind=kind))
    train_step = jax.jit(
        steps.make_train_step(config),
        donate_argnums=0,
        out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
    )

    def evaluate(step: int) -> None:
        grids = jax.device_get(draw_grids(state, **grid_inputs))
        if is_writer:
            for name, images in grids.items():
                grid = log_lib.image_grid(np.asarray(images), value_range(config))
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
    last_time, last_step, metrics = time.perf_counter(), start, None
    for step, local_batch in enumerate(batches.iterate(start, total), start=start):
        state, metrics = train_step(state, parallel.global_batch(local_batch, mesh), keys["train"])
        done = step + 1
        progress.update(1)
        if done % config.train.log_every == 0 or done == total:
            values = jax.device_get(metrics)  # the loop's only host sync
            now = time.perf_counter()
            values["steps_per_sec"] = (done - last_step) / (now - last_time)
            last_time, last_step = now, done
            writer.write(done, values)
            progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
        if done % config.eval.every == 0 or done == total:
            evaluate(done)
        if done % config.train.checkpoint_every == 0 or done == total:
            checkpoints.save(done, state)
    progress.close()
    checkpoints.close()
    writer.close()
    return state


def _grid_inputs(config, kind: str, key: jax.Array) -> dict:
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
