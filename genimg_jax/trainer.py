"""The training loop shared by every family: restore or init, then step, log, sample and
checkpoint until `train.steps`. Data and randomness are functions of (seed, step), so a resumed
run continues exactly where an uninterrupted one would be."""

import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from genimg_jax import compile_cache, models, parallel, sampling, signals, steps
from genimg_jax import config as config_lib
from genimg_jax import guard as guard_lib
from genimg_jax import logging as log_lib
from genimg_jax import state as state_lib
from genimg_jax import workdir as workdir_lib
from genimg_jax.checkpoint import Checkpoints
from genimg_jax.data import pipeline
from genimg_jax.errors import DivergenceError, Preempted, WorkdirError
from genimg_jax.evaluate.tracker import ScoreTracker


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
    compile: Callable[..., float]  # (placed state, placed batch, key) -> seconds compiling step


def timed_compile(step: Callable, *args: Any) -> float:
    """Compiles the jitted or pmapped `step` for `args` ahead of its first call, which then runs
    the same executable; returns the seconds that took (near 0 where this process had compiled
    it already, as for the later runs of an in-process sweep)."""
    start = time.perf_counter()
    step.lower(*args).compile()
    return time.perf_counter() - start


def make_strategy(config: ml_collections.ConfigDict, mesh: Mesh, step_fn: Callable) -> Strategy:
    """`parallel.strategy`: "jit" (global arrays sharded over the mesh) or "pmap" (the same
    step mapped over local devices with cross-device means). Both compile the step once.
    `step_fn(axis_name)` builds the pure step for an axis name (None under jit)."""
    if config.parallel.strategy == "jit":
        step = jax.jit(step_fn(None), donate_argnums=0, out_shardings=parallel.replicated(mesh))
        return Strategy(
            place_state=lambda s: s,
            place_batch=functools.partial(parallel.global_batch, mesh=mesh),
            step=step,
            gather_state=lambda s: s,
            host_metrics=parallel.to_host,
            compile=functools.partial(timed_compile, step),
        )
    step = jax.pmap(
        step_fn(parallel.AXIS),
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
        compile=functools.partial(timed_compile, step),
    )


_STRATEGIES: dict[tuple, Strategy] = {}


def compiled_strategy(config: ml_collections.ConfigDict, mesh: Mesh) -> Strategy:
    """The strategy (and its compiled step) for `config` on `mesh`, shared by every run in this
    process that differs only in hyperparameters (seed, learning rates, β): a sweep run
    in-process compiles its step once."""
    key = (state_lib.static_key(config), tuple(d.id for d in mesh.devices.flat))
    if key not in _STRATEGIES:
        watch_metrics = not config.train.skip_nonfinite
        _STRATEGIES[key] = make_strategy(
            config,
            mesh,
            lambda axis: guard_lib.guarded(steps.make_train_step(config, axis), watch_metrics),
        )
    return _STRATEGIES[key]


@functools.cache
def grid_drawer(kind: str) -> Callable:
    """The jitted function drawing a family kind's sample grids (one per process)."""
    return jax.jit(functools.partial(sampling.sample_grids, kind=kind))


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


def config_hint(config: ml_collections.ConfigDict, workdir: str) -> str:
    """For a checkpoint that does not fit: which fields differ from the run's saved config."""
    saved = os.path.join(workdir, "config.json")
    if not os.path.exists(saved):
        return ""
    changed = config_lib.differences(config_lib.load_saved(saved), config)
    return f" (fields that differ from {saved}: {'; '.join(changed)})" if changed else ""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Trains `config` in `workdir` (resuming from its latest readable checkpoint); returns
    the final state as replicated global arrays. Raises a GenimgError subclass with a message
    naming the cause and the fix when the run cannot go on; checkpoints already written stay."""
    config_lib.validate(config)
    parallel.set_deterministic_gpu_ops(config.deterministic)
    compile_cache.use(config.compile_cache_dir)
    parallel.initialize_distributed(config.parallel)
    mesh = parallel.make_mesh(config.parallel.num_devices)
    parallel.check_batch_size(config.train.batch_size, mesh)
    is_writer = jax.process_index() == 0
    if is_writer:
        workdir_lib.ensure_writable(workdir)
    lock = workdir_lib.exclusive(workdir) if is_writer else contextlib.nullcontext()
    try:
        with lock, signals.StopRequest() as stop:
            return _train(config, workdir, mesh, stop)
    except OSError as e:  # full disk, read-only or vanished workdir while the run writes
        intact = (
            sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
            if os.path.isdir(os.path.join(workdir, "checkpoints"))
            else []
        )
        raise WorkdirError(
            f"writing to {workdir} failed: {e}. Free space on that disk or make it writable, "
            f"then rerun to resume; intact checkpoints: {intact or 'none'}."
        ) from None


def _train(config, workdir: str, mesh: Mesh, stop: signals.StopRequest) -> Any:
    kind = models.get_family(config.model.family).kind
    is_writer = jax.process_index() == 0
    batches = batches_for(config)

    checkpoints = Checkpoints(workdir, config.train.keep_checkpoints)
    hint = config_hint(config, workdir) if is_writer else ""
    state, start = checkpoints.restore_latest_good(initial_state(config, mesh), hint)
    if start:  # resumed, maybe with overrides: the config's learning rates and β win
        state = parallel.replicate_global(state_lib.apply_hparams(state, config), mesh)
    if is_writer:
        write_record(config, workdir)
    writer = log_lib.MetricWriter(workdir, start_step=start, enabled=is_writer)

    keys = parallel.replicate_global(run_keys(config.seed), mesh)
    fixed_inputs = parallel.replicate_global(grid_inputs(config, kind, keys["sample"]), mesh)
    draw_grids = grid_drawer(kind)
    watch_metrics = not config.train.skip_nonfinite
    strategy = compiled_strategy(config, mesh)

    tracker = ScoreTracker(config, workdir, start) if config.eval.scores else None
    last_scores = {}

    def evaluate(global_state: Any, step: int) -> None:
        nonlocal last_scores
        grids = parallel.to_host(draw_grids(global_state, **fixed_inputs))
        if is_writer:
            for name, images in grids.items():
                grid = log_lib.image_grid(images, models.value_range(config))
                log_lib.save_png(grid, os.path.join(workdir, "samples", f"{name}_{step:06d}.png"))
                writer.write_image(step, name, grid)
        if tracker is not None:
            checkpoints.wait()  # the tracker's best save must not overlap a pending one
            last_scores = tracker(step, global_state, writer) | tracker.summary()

    def check_finite(guard, metrics, last_saved: int) -> None:
        names = guard_lib.watched_names(state, list(metrics), watch_metrics)
        found = guard_lib.describe(strategy.host_metrics(guard), names)
        if found:
            step, bad = found
            raise DivergenceError(
                f"non-finite {', '.join(bad)} at step {step}. The last checkpoint, step "
                f"{last_saved or 'none'} in {checkpoints.directory}, is kept and holds finite "
                f"values; nothing after it was saved. Lower the learning rate, set "
                f"train.grad_clip_norm > 0, or set train.skip_nonfinite=True to skip such updates."
            )

    total = config.train.steps
    progress = tqdm(
        total=total,
        initial=start,
        disable=not is_writer,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
    )
    # XLA:CPU can deadlock in a collective when several steps of a multi-device program are in
    # flight on few cores (seen with 8 host devices on 2 cores); there, wait for each step.
    one_step_in_flight = jax.default_backend() == "cpu" and len(parallel.local_devices(mesh)) > 1
    # Inputs laid out exactly like the step's outputs, so the first step does not compile twice.
    carry = strategy.place_state((state, parallel.replicate_global(guard_lib.fresh(), mesh)))
    last_time, last_step, last_saved = time.perf_counter(), start, start
    began, values_of_last_log = time.perf_counter(), {}
    # A log step's metrics and guard are read on the host after the next step is dispatched, so
    # the device works on that step while the host waits, writes the log and draws the next
    # batch (where dispatch is asynchronous: accelerators and multi-device CPU programs; a
    # single-device CPU program runs on this thread, see host_memory.py). The guard is copied:
    # the next step takes the carry's buffers (donation).
    pending_log = None
    compile_sec = None  # the step is compiled ahead of its first call, timed apart from it

    def write_pending_log() -> None:
        nonlocal pending_log, last_time, last_step, values_of_last_log
        if pending_log is None:
            return
        done, metrics, guard = pending_log
        pending_log = None
        values = strategy.host_metrics(metrics)  # the loop's only per-interval host sync
        now = time.perf_counter()
        values["steps_per_sec"] = (done - last_step) / (now - last_time)
        last_time, last_step = now, done
        check_finite(guard, metrics, last_saved)
        writer.write(done, values)
        values_of_last_log = values
        progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)

    try:
        for step, local_batch in enumerate(batches.iterate(start, total), start=start):
            batch = strategy.place_batch(local_batch)
            if compile_sec is None:
                hits = compile_cache.hits()
                compile_sec = strategy.compile(carry, batch, keys["train"])
                if is_writer:
                    cached = " (cached)" if compile_cache.hits() > hits else ""
                    progress.write(f"compiled the training step in {compile_sec:.1f} s{cached}")
            carry, metrics = strategy.step(carry, batch, keys["train"])
            if one_step_in_flight:
                jax.block_until_ready(carry)
            write_pending_log()  # the previous log step's, now that this step is queued
            done = step + 1
            progress.update(1)
            is_log = done % config.train.log_every == 0 or done == total
            stopping = (jax.process_count() == 1 or is_log) and stop.agreed()
            if is_log:
                pending_log = (done, metrics, jax.tree.map(jnp.copy, carry[1]))
            is_eval = done % config.eval.every == 0 or done == total
            is_save = done % config.train.checkpoint_every == 0 or done == total or stopping
            if is_eval or is_save:
                write_pending_log()
                check_finite(carry[1], metrics, last_saved)
                state = strategy.gather_state(carry)[0]
                if is_eval:
                    evaluate(state, done)
                if is_save:
                    checkpoints.save(done, state)
                    last_saved = done
            if stopping:
                checkpoints.close()
                if tracker is not None:
                    tracker.close()
                if is_writer:
                    write_summary(
                        workdir,
                        done,
                        time.perf_counter() - began,
                        values_of_last_log,
                        last_scores,
                        compile_sec,
                    )
                raise Preempted(
                    f"stopped by {signal.Signals(stopping).name} after step {done}; checkpoint "
                    f"saved in {checkpoints.directory}. Run the same command again to resume.",
                    stopping,
                )
        checkpoints.close()  # waits for the last save; raises if it failed
        if tracker is not None:
            tracker.close()
        if is_writer:
            write_summary(
                workdir,
                total,
                time.perf_counter() - began,
                values_of_last_log,
                last_scores,
                compile_sec,
            )
    finally:
        progress.close()
        writer.close()
        checkpoints.abandon()
        if tracker is not None:
            tracker.abandon()
    return strategy.gather_state(carry)[0]


def batches_for(config: ml_collections.ConfigDict) -> pipeline.Batches:
    """This process's deterministic batches of the training split."""
    data_cfg = config.data
    if jax.process_index() == 0:  # process 0 prepares first: processes sharing a dir never race
        pipeline.prepare(data_cfg.name, data_cfg.data_dir)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("genimg: data prepared")
    return pipeline.Batches(
        pipeline.load_split(data_cfg.name, data_cfg.train_split, data_cfg.data_dir),
        seed=config.seed,
        batch_size=config.train.batch_size,
        image_size=data_cfg.image_size,
        channels=data_cfg.channels,
        value_range=models.value_range(config),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        binarize=data_cfg.binarize,
    )


def grid_inputs(config: ml_collections.ConfigDict, kind: str, key: jax.Array) -> dict:
    """Fixed inputs of the sample grids: latents, and for VAEs the first evaluation images."""
    n = config.eval.num_samples
    inputs = {"z": sampling.latents(key, n, config.model.latent_dim), "x": None}
    if kind == "vae":
        data = config.data
        source = pipeline.load_split(data.name, data.eval_split, data.data_dir)
        images = source.get(np.arange(min(n // 2, len(source))))["image"]
        images = pipeline.fit_images(images, data.image_size, data.channels)
        inputs["x"] = pipeline.scale_images(images, models.value_range(config))
        if data.binarize:
            inputs["x"] = pipeline.binarize(inputs["x"], models.value_range(config))
    return inputs
