"""Vectorized sweeps: K members that differ only in hyperparameters (seed, learning rates, β)
train as ONE compiled program over stacked states, stacked batches and stacked keys. Each
member reads, logs, samples and checkpoints into its own folder exactly as a solo run does, so
any member can later be resumed, sampled or reported on alone.

How the K steps run is chosen per backend ("auto"): `jax.vmap` on accelerators, where one small
model leaves the chip idle; on CPU, "sequential": the one compiled member step called for each
member in turn (states are never stacked). Measured on a 2-core CPU (benchmarks/sweep.py, conv
VAE, K=8): vmap 5-10x, lax.map 23-33x and an unrolled program 1.6x slower than sequential
steps, because XLA:CPU's fast convolution path does not take per-member (grouped) weights and
one member already keeps the cores busy. "vmap", "map" and "unroll" can be forced.
"""

import contextlib
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genimg_jax import compile_cache, models, parallel, signals, steps, sweep, trainer
from genimg_jax import guard as guard_lib
from genimg_jax import logging as log_lib
from genimg_jax import state as state_lib
from genimg_jax import workdir as workdir_lib
from genimg_jax.checkpoint import Checkpoints
from genimg_jax.errors import ConfigError, DivergenceError, Preempted
from genimg_jax.evaluate.tracker import ScoreTracker

MODES = ("auto", "sequential", "vmap", "unroll", "map")


def resolve_mode(mode: str) -> str:
    """The mode to run: "auto" is "vmap" on GPU/TPU and "sequential" on CPU."""
    if mode not in MODES:
        raise ConfigError(f"vectorize mode {mode!r}; use one of {list(MODES)}")
    if mode == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "vmap"
    return mode


def stack(trees: list):
    """K pytrees of equal structure -> one pytree of [K, ...] arrays."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, i: int):
    """Member i of a stacked pytree."""
    return jax.tree.map(lambda x: x[i], tree)


def vectorize(step: Callable, mode: str) -> Callable:
    """A per-member step (carry, batch, key) -> (carry, metrics) over stacked arguments."""
    if mode == "vmap":
        return jax.vmap(step)
    if mode == "map":
        return lambda carry, batch, key: jax.lax.map(lambda a: step(*a), (carry, batch, key))

    def unrolled(carry, batch, key):  # K independent copies of the step in one program
        k = jax.tree.leaves(key)[0].shape[0]
        outs = [step(unstack(carry, i), unstack(batch, i), unstack(key, i)) for i in range(k)]
        return stack([c for c, _ in outs]), stack([m for _, m in outs])

    return unrolled


_STEPS: dict[tuple[str, str], Callable] = {}


def compiled_step(config: ml_collections.ConfigDict, mode: str) -> Callable:
    """The jitted K-member step, shared by configs equal to `config` up to hyperparameters."""
    key = (state_lib.static_key(config), mode)
    if key not in _STEPS:
        step = guard_lib.guarded(steps.make_train_step(config), not config.train.skip_nonfinite)
        if mode == "sequential":  # carries, batches and keys are lists: one call per member
            solo = jax.jit(step, donate_argnums=0)
            _STEPS[key] = lambda carries, batches, keys: tuple(
                map(list, zip(*map(solo, carries, batches, keys), strict=True))
            )
        else:
            _STEPS[key] = jax.jit(vectorize(step, mode), donate_argnums=0)
    return _STEPS[key]


def member(tree, i: int):
    """Member i of a K-member carry or output: a list (sequential) or stacked arrays."""
    return tree[i] if isinstance(tree, list) else unstack(tree, i)


def check_vectorizable(configs: list[ml_collections.ConfigDict]) -> None:
    """Raises ConfigError unless the members differ only in hyperparameters."""
    keys = {state_lib.static_key(c) for c in configs}
    if len(keys) > 1:
        raise ConfigError(
            "--vectorize needs members that differ only in "
            f"{', '.join(state_lib.HYPERPARAMETERS)}; this sweep also varies other fields. "
            "Run it without --vectorize."
        )


def train_members(
    base: ml_collections.ConfigDict, workdir: str, members: list[sweep.Member], mode: str = "auto"
) -> None:
    """Trains `members` of a sweep as one program, each into its folder under `workdir`.
    Members resumed at different steps are trained in groups of equal start step."""
    configs = [sweep.apply(base, m.overrides) for m in members]
    check_vectorizable(configs)
    compile_cache.use(base.compile_cache_dir)
    mode = resolve_mode(mode)
    dirs = [sweep.member_dir(workdir, m) for m in members]
    mesh = parallel.make_mesh(1)
    with contextlib.ExitStack() as stack_:
        for d in dirs:
            workdir_lib.ensure_writable(d)
            stack_.enter_context(workdir_lib.exclusive(d))
        stop = stack_.enter_context(signals.StopRequest())
        restored = [_restore(c, d, mesh) for c, d in zip(configs, dirs, strict=True)]
        for start in sorted({s for _, s in restored}):
            group = [i for i, (_, s) in enumerate(restored) if s == start]
            _train_group(
                [configs[i] for i in group],
                [dirs[i] for i in group],
                [restored[i][0] for i in group],
                start,
                mode,
                stop,
            )


def _restore(config, folder: str, mesh):
    checkpoints = Checkpoints(folder, config.train.keep_checkpoints)
    template = trainer.initial_state(config, mesh)
    state, start = checkpoints.restore_latest_good(template, trainer.config_hint(config, folder))
    checkpoints.close()
    return (state_lib.apply_hparams(state, config) if start else state), start


def _train_group(configs, dirs, states, start: int, mode: str, stop) -> None:
    k, config = len(configs), configs[0]
    total = config.train.steps
    if start >= total:
        return
    kind = models.get_family(config.model.family).kind
    for c, d in zip(configs, dirs, strict=True):
        trainer.write_record(c, d)
    writers = [log_lib.MetricWriter(d, start_step=start) for d in dirs]
    checkpoints = [
        Checkpoints(d, c.train.keep_checkpoints) for c, d in zip(configs, dirs, strict=True)
    ]
    trackers = [
        ScoreTracker(c, d, start) if c.eval.scores else None
        for c, d in zip(configs, dirs, strict=True)
    ]
    last_scores = [{} for _ in configs]
    batches = [trainer.batches_for(c) for c in configs]
    keys = [trainer.run_keys(c.seed) for c in configs]
    grid_inputs = [
        trainer.grid_inputs(c, kind, key["sample"]) for c, key in zip(configs, keys, strict=True)
    ]
    draw = trainer.grid_drawer(kind)
    step = compiled_step(config, mode)
    gather = list if mode == "sequential" else stack
    train_keys = gather([key["train"] for key in keys])
    carry = gather([(s, guard_lib.fresh()) for s in states])
    began, last_time, last_step, last_values = time.perf_counter(), time.perf_counter(), start, None
    iterators = [b.iterate(start, total) for b in batches]
    try:
        for done in range(start + 1, total + 1):
            batch = gather([next(it) for it in iterators])
            carry, metrics = step(carry, batch, train_keys)
            is_log = done % config.train.log_every == 0 or done == total
            stopping = stop.agreed()
            if is_log:
                values = jax.device_get(metrics)
                now = time.perf_counter()
                rate = (done - last_step) / (now - last_time)
                last_time, last_step = now, done
                _check_finite(carry, metrics, dirs, config)
                last_values = [{**member(values, i), "steps_per_sec": rate} for i in range(k)]
                for writer, row in zip(writers, last_values, strict=True):
                    writer.write(done, row)
            is_eval = done % config.eval.every == 0 or done == total
            is_save = done % config.train.checkpoint_every == 0 or done == total or stopping
            if is_eval or is_save:
                _check_finite(carry, metrics, dirs, config)
                for i in range(k):
                    member_state = member(carry, i)[0]
                    if is_eval:
                        _write_grids(
                            draw(member_state, **grid_inputs[i]),
                            configs[i],
                            dirs[i],
                            writers[i],
                            done,
                        )
                        if trackers[i] is not None:
                            checkpoints[i].wait()
                            scores = trackers[i](done, member_state, writers[i])
                            last_scores[i] = scores | trackers[i].summary()
                    if is_save:
                        checkpoints[i].save(done, member_state)
            if stopping:
                break
        for i, c in enumerate(checkpoints):
            c.close()
            if trackers[i] is not None:
                trackers[i].close()
            trainer.write_summary(
                dirs[i],
                done,
                time.perf_counter() - began,
                last_values[i] if last_values else {},
                last_scores[i],
            )
    finally:
        for w in writers:
            w.close()
        for c in checkpoints + [t for t in trackers if t is not None]:
            c.abandon()
    if stopping:
        raise Preempted(
            f"stopped after step {done}; checkpoints saved in every member's folder. "
            f"Run the same command again to resume.",
            stopping,
        )


def _write_grids(grids, config, folder: str, writer, step: int) -> None:
    for name, images in jax.device_get(grids).items():
        grid = log_lib.image_grid(np.asarray(images), models.value_range(config))
        log_lib.save_png(grid, os.path.join(folder, "samples", f"{name}_{step:06d}.png"))
        writer.write_image(step, name, grid)


def _check_finite(carry, metrics, dirs: list[str], config) -> None:
    first_state, _ = member(carry, 0)
    names = guard_lib.watched_names(
        first_state, list(member(metrics, 0)), not config.train.skip_nonfinite
    )
    for i, folder in enumerate(dirs):
        found = guard_lib.describe(jax.device_get(member(carry, i)[1]), names)
        if found:
            raise DivergenceError(
                f"member {os.path.basename(folder)}: non-finite {', '.join(found[1])} at step "
                f"{found[0]}; its last checkpoint is kept. Drop the member or lower its "
                f"learning rate, or set train.skip_nonfinite=True."
            )
