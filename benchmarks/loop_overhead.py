"""Loop overhead: the trainer's images/s on the default main job vs its bare compiled step.

Run: `.venv/bin/python benchmarks/loop_overhead.py [--steps 300] [--repeats 2] [--progress]`.

The trainer (`trainer.train_and_evaluate`) runs configs/dcgan_mnist.py for `--steps` steps with
its log, evaluation and checkpoint intervals scaled by steps / train.steps (5000 -> 300: log
every 6, sample grids and checkpoints every 60; scores off), in a fresh workdir, on bundled MNIST prepared
beforehand in a temporary TFDS dir (unless $TFDS_DATA_DIR is set). The loop is not modified:
`pipeline.Batches.iterate` is wrapped to read the clock as each batch is drawn, i.e. after the
previous step's log (a host sync), evaluation and checkpoint. From those times: the median log
interval without evaluation or checkpoint, the median extra time of one with them, and the
wall-clock rate from the first log after the first evaluation cycle to the end of the run
(start-up, compilation and the first sample-grid compilation left out).

In the same process, interleaved with the trainer runs, chunks of `log_every` steps of
- the bare step: `jax.jit(steps.make_train_step(config), donate_argnums=0)` on a fixed batch,
- the trainer's own compiled program (`make_strategy` + divergence guard, same placement),
are dispatched asynchronously and waited for at the end of each chunk, as the loop does between
logs. The last line is `loop_overhead=X%`: how much longer a steady-state trainer step (median
log interval + evaluations and checkpoints at their interval) takes than a bare one (median chunk).
"""

import argparse
import atexit
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from typing import NamedTuple, Self

import jax
import numpy as np

try:
    import genimg_jax  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: import from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg_jax import guard as guard_lib
from genimg_jax import parallel, steps, trainer
from genimg_jax.data import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py's get_config(arg)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def scaled_config(run_steps: int):
    """configs/dcgan_mnist.py on one device with its intervals scaled to `run_steps` steps."""
    config = load_config("dcgan_mnist")
    scale = run_steps / config.train.steps
    config.train.steps = run_steps
    for section, key in (("train", "log_every"), ("train", "checkpoint_every"), ("eval", "every")):
        config[section][key] = max(1, round(config[section][key] * scale))
    config.parallel.num_devices = 1
    # Scores (FID etc. on 1000 samples) are evaluation work a run asks for at `eval.every`, not
    # loop overhead; scaled to 300 steps they would run every 60. Sample grids stay.
    config.eval.scores = False
    return config


class StepClock:
    """Reads the clock each time the loop draws a batch from `pipeline.Batches.iterate`, i.e.
    just before it dispatches that batch's step."""

    def __init__(self):
        self.times: list[float] = []
        self._iterate = pipeline.Batches.iterate

    def __enter__(self) -> Self:
        iterate, times = self._iterate, self.times

        def timed_iterate(batches, *args, **kwargs):
            for batch in iterate(batches, *args, **kwargs):
                times.append(time.perf_counter())
                yield batch

        pipeline.Batches.iterate = timed_iterate
        return self

    def __exit__(self, *exc) -> None:
        pipeline.Batches.iterate = self._iterate


class TrainerRun(NamedTuple):
    """One fresh trainer run, timed."""

    steady: float  # images/s from the step after the first eval/checkpoint cycle to the end
    whole: float  # images/s of the whole call, start-up included
    plain: list[float]  # seconds of each log interval with no evaluation or checkpoint
    events: list[float]  # seconds of each later log interval that starts with eval/checkpoint


def trainer_run(config, progress: bool) -> TrainerRun:
    """Trains `config` once in a fresh workdir and times it."""
    workdir = tempfile.mkdtemp(prefix="genimg_loop_overhead_")
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with quiet, StepClock() as clock:
            start = time.perf_counter()
            jax.block_until_ready(trainer.train_and_evaluate(config, workdir))
            end = time.perf_counter()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total, batch, log = config.train.steps, config.train.batch_size, config.train.log_every
    every = (config.eval.every, config.train.checkpoint_every)
    assert len(clock.times) == total, "the loop no longer draws its batches with Batches.iterate"
    # times[i]: batch i drawn, after step i's log (a host sync), evaluation and checkpoint
    first = max(every) + log  # the first log after the first eval/checkpoint cycle
    assert first < total, f"--steps {total} is too short for the intervals"
    plain, events = [], []
    for done in range(log, total - log + 1, log):  # the interval from this log to the next
        seconds = (clock.times[done + log] if done + log < total else end) - clock.times[done]
        if not any(done % e == 0 for e in every):
            plain.append(seconds)
        elif done > min(every):  # the first cycle also compiles the sample grids
            events.append(seconds)
    steady = (total - first) * batch / (end - clock.times[first])
    return TrainerRun(steady, total * batch / (end - start), plain, events)


class Chunks:
    """A compiled step run in chunks of `n` asynchronously dispatched steps."""

    def __init__(self, step, carry, batch, key, n: int, batch_size: int):
        self.step, self.carry, self.batch, self.key = step, carry, batch, key
        self.n, self.batch_size = n, batch_size
        self.run()  # compile and warm up

    def run(self) -> float:
        """Images/s of one chunk."""
        start = time.perf_counter()
        for _ in range(self.n):
            self.carry, metrics = self.step(self.carry, self.batch, self.key)
        jax.block_until_ready((self.carry, metrics))
        return self.n * self.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="trainer steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="trainer runs")
    parser.add_argument("--chunks", type=int, default=8, help="step chunks between trainer runs")
    parser.add_argument("--progress", action="store_true", help="show the trainer's progress bar")
    args = parser.parse_args()

    if not os.environ.get("TFDS_DATA_DIR"):  # a private data dir, removed at exit
        os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="genimg_tfds_")
        atexit.register(shutil.rmtree, os.environ["TFDS_DATA_DIR"], ignore_errors=True)
    config = scaled_config(args.steps)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        pipeline.prepare(config.data.name, config.data.data_dir)  # quietly: TFDS's progress
    b, s, c = config.train.batch_size, config.data.image_size, config.data.channels
    print(
        f"configs/dcgan_mnist.py: {s}x{s}x{c}, batch {b}, {args.steps} steps per run, log every "
        f"{config.train.log_every}, sample grids every {config.eval.every}, checkpoints every "
        f"{config.train.checkpoint_every}; {jax.device_count()} {jax.default_backend()} device, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    mesh = parallel.make_mesh(1)
    images = np.random.default_rng(0).uniform(-1, 1, (b, s, s, c)).astype(np.float32)
    key = jax.random.PRNGKey(0)
    bare = Chunks(
        jax.jit(steps.make_train_step(config), donate_argnums=0),
        trainer.initial_state(config, mesh),
        {"image": jax.device_put(images)},
        key,
        config.train.log_every,
        b,
    )
    strategy = trainer.make_strategy(
        config, mesh, lambda axis: guard_lib.guarded(steps.make_train_step(config, axis))
    )
    fresh_guard = parallel.replicate_global(guard_lib.fresh(), mesh)  # placed as step outputs
    guarded = Chunks(
        strategy.step,
        strategy.place_state((trainer.initial_state(config, mesh), fresh_guard)),
        strategy.place_batch({"image": images}),
        parallel.replicate_global(key, mesh),
        config.train.log_every,
        b,
    )

    rates = {"bare": [], "guarded": [], "trainer": [], "whole run": []}
    plain, events = [], []

    def chunks() -> None:
        for _ in range(args.chunks):
            rates["bare"].append(bare.run())
            rates["guarded"].append(guarded.run())

    chunks()
    for i in range(args.repeats):
        run = trainer_run(config, args.progress)
        rates["trainer"].append(run.steady)
        rates["whole run"].append(run.whole)
        plain += run.plain
        events += run.events
        print(
            f"trainer run {i + 1}: {run.steady:.0f} images/s steady, {run.whole:.0f} whole run",
            flush=True,
        )
        chunks()

    med = {name: float(np.median(values)) for name, values in rates.items()}
    ms = {name: b / rate * 1e3 for name, rate in med.items()}  # per step
    log = config.train.log_every
    per_event = min(config.eval.every, config.train.checkpoint_every)
    plain_ms = float(np.median(plain)) / log * 1e3
    event_ms = (float(np.median(events)) - float(np.median(plain))) * 1e3 if events else 0.0
    trainer_ms = plain_ms + event_ms / per_event  # the steady state, from medians

    def line(name: str, step_ms: float, note: str = "") -> None:
        print(f"{name:<36} {b / step_ms * 1e3:6.0f} images/s {step_ms:6.1f} ms/step {note}")

    line("bare compiled step", ms["bare"], f"(median of {len(rates['bare'])} chunks of {log})")
    line(
        "trainer's compiled program (guard)", ms["guarded"], f"({ms['guarded'] / ms['bare']:.3f}x)"
    )
    line(
        "trainer between evaluations",
        plain_ms,
        f"({plain_ms / ms['bare']:.3f}x; median log interval: data, a log every {log}, guard)",
    )
    print(
        f"{'one sample-grid eval + checkpoint':<36} {event_ms:+.0f} ms (median, every {per_event})"
    )
    line("trainer, steady state", trainer_ms, "(between evaluations + evaluations)")
    line("trainer, steady state, wall mean", ms["trainer"], f"(median of {args.repeats} runs)")
    line("trainer, whole run incl. start-up", ms["whole run"], "(compile, init, first grids)")
    full = load_config("dcgan_mnist")
    full_every = min(full.eval.every, full.train.checkpoint_every)
    estimate = (plain_ms + event_ms / full_every) / ms["bare"] - 1
    print(
        f"at the config's own intervals (log every {full.train.log_every}, grids and checkpoints "
        f"every {full_every}), estimated overhead <= {estimate:.1%} (with a log every {log})"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"trainer steady state: {b / trainer_ms * 1e3:.0f} images/s; bare step: {med['bare']:.0f}"
    )
    print(f"loop_overhead={100 * (trainer_ms / ms['bare'] - 1):.1f}%")


if __name__ == "__main__":
    main()
