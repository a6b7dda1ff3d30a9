"""The training loop: K >= 1 members (a solo run is one; a vectorized sweep is K that differ only
in hyperparameters) restore or initialise, then step, log, evaluate and checkpoint until
`train.steps`. The loop decides when; each `member.Member` does it in its own workdir, and a
`programs` object runs the members' steps on the devices. Data and randomness are functions of
(seed, step), so a resumed run continues exactly where an uninterrupted one would be."""

import contextlib
import functools
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core.errors import Preempted, WorkdirError
from genimg_jax.runtime import compile_cache, parallel, signals
from genimg_jax.runtime import workdir as workdir_lib
from genimg_jax.training import programs
from genimg_jax.training.member import Member


def start_up(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """What a training run does first: validates the config, checks that its data can serve its
    family (`Family.check_data`: a conditional GAN's labels), and joins a multi-process run
    (`parallel.multihost`). No process-wide setting changes here: the CLI applies those
    (`runtime.setup.setup_runtime`). Returns the config."""
    config_lib.validate(config)
    families.of(config).check_data(config)  # data that cannot serve it: stop before building
    parallel.initialize_distributed(config.parallel)
    return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Trains `config` in `workdir` (resuming from its latest readable checkpoint); returns
    the final state as replicated global arrays. Raises a GenimgError subclass with a message
    naming the cause and the fix when the run cannot go on; checkpoints already written stay."""
    return train([config], [workdir])[0]


def train(
    configs: list[ml_collections.ConfigDict], workdirs: list[str], mode: str = "auto"
) -> list[Any]:
    """Trains K members, `configs[i]` in `workdirs[i]`, as one program (`programs.for_members`
    in `mode`); they must differ only in hyperparameters. Each resumes from its own latest
    checkpoint; members resumed at different steps train in groups of equal start step.
    Returns the final states."""
    for c in configs[1:]:
        config_lib.validate(c)
    config = start_up(configs[0])  # the members share everything start_up sets
    programs.check_vectorizable(configs)
    mesh = parallel.make_mesh(config.parallel.num_devices)
    program_for = functools.cache(lambda k: programs.for_members(config, mesh, k, mode))
    program_for(len(configs))  # devices and batch size checked before anything is written
    is_writer = jax.process_index() == 0
    try:
        with contextlib.ExitStack() as stack:
            for d in workdirs if is_writer else ():
                workdir_lib.ensure_writable(d)
                stack.enter_context(workdir_lib.exclusive(d))
            stop = stack.enter_context(signals.StopRequest())
            members = []
            for c, d in zip(configs, workdirs, strict=True):
                label = (
                    f"member {os.path.basename(os.path.normpath(d))}" if len(configs) > 1 else ""
                )
                members.append(Member(c, d, mesh, label))
                stack.callback(members[-1].close)
            for start in sorted({m.start for m in members}):
                group = [m for m in members if m.start == start]
                if start < config.train.steps:
                    _train(group, program_for(len(group)), stop)
            return [m.state for m in members]
    except OSError as e:  # full disk, read-only or vanished workdir while the run writes
        raise WorkdirError(
            f"writing to {_failed_workdir(workdirs, e)} failed: {e}. Free space on that disk or "
            f"make it writable, then rerun to resume; intact checkpoints: "
            f"{_intact(_failed_workdir(workdirs, e)) or 'none'}."
        ) from None


def _failed_workdir(workdirs: list[str], error: OSError) -> str:
    failed = os.path.abspath(str(error.filename or ""))
    inside = [d for d in workdirs if failed.startswith(os.path.abspath(d) + os.sep)]
    return inside[0] if inside else workdirs[0]


def _intact(workdir: str) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    return (
        sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []
    )


def _train(members: list[Member], program, stop: signals.StopRequest) -> None:
    """Steps `members` (resumed at one start step) to `train.steps` with `program`."""
    loop = _Loop(members, program)
    try:
        loop.run(stop)
    finally:
        if loop.progress is not None:
            loop.progress.close()


def dispatches(start: int, stop: int, k: int) -> Iterator[tuple[int, int]]:
    """(first step, steps) of each call of the compiled program over steps start..stop-1: `k`
    steps per call from a multiple of k (train.steps_per_dispatch), single steps before the
    first multiple (a run resumed elsewhere) and after the last whole call."""
    step = start
    while step < stop:
        n = k if step % k == 0 and step + k <= stop else 1
        yield step, n
        step += n


class _Loop:
    """One group's steps, and when each member logs, evaluates, saves and finishes.

    Per call of the compiled program (`train.steps_per_dispatch` steps) the host places the
    call's batches (drawn ahead by the data thread), dispatches it and checks for a stop request
    (a flag; a collective at log steps only when several processes run). A log step's metrics
    and guards are read after the next call is dispatched, so the device works while the host
    waits, writes the logs and moves the progress bar (where dispatch is asynchronous:
    accelerators and multi-device CPU programs; a single-device CPU program runs on this thread,
    see runtime/cpu_tuning.py). Nothing else syncs with the device between log steps."""

    def __init__(self, members: list[Member], program):
        self.members, self.program = members, program
        self.config, self.start = members[0].config, members[0].start
        self.is_writer = jax.process_index() == 0
        self.progress = None  # opened once the data is ready (preparing it may fail first)
        self.began = self.last_time = time.perf_counter()
        self.last_step = self.start
        self.pending_log = None  # (step, metrics, guards) of the last log step, not yet read
        self.compile_sec = None  # each step program is compiled ahead of its first call, timed
        self.compiled: set[int] = set()  # steps per call of the programs compiled

    def run(self, stop: signals.StopRequest) -> None:
        members, program, train = self.members, self.program, self.config.train
        # read once: a ConfigDict attribute costs microseconds, against millisecond steps
        total, log_every, save_every = train.steps, train.log_every, train.checkpoint_every
        eval_every, one_process = self.config.eval.every, jax.process_count() == 1
        batches = [m.begin() for m in members]
        self.progress = tqdm(
            total=total,
            initial=self.start,
            disable=not self.is_writer,
            unit="step",
            desc=f"{len(members)} members" if len(members) > 1 else None,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        keys = program.place_keys([m.train_key for m in members])
        # Inputs laid out exactly like the step's outputs: the first step does not compile twice.
        carry = program.place([m.state for m in members])
        for first, n in dispatches(self.start, total, train.steps_per_dispatch):
            batch = self.draw(batches, n)
            if n not in self.compiled:
                self.compile(carry, batch, keys, n)
            carry, metrics = program.step(carry, batch, keys, n)
            self.write_pending_log()  # the previous log step's, now that this call is queued
            done = first + n
            is_log = done % log_every == 0 or done == total
            stopping = (one_process or is_log) and stop.agreed()
            if is_log:
                self.pending_log = (done, metrics, program.guards(carry))
            is_eval = done % eval_every == 0 or done == total
            is_save = done % save_every == 0 or done == total or stopping
            if is_eval or is_save:
                self.evaluate_and_save(done, carry, metrics, is_eval, is_save)
            if stopping:
                self.stop(done, stopping)
        self.finish(total)

    def draw(self, batches: list, n: int):
        """Every member's batches of the next `n` steps (stacked when n > 1), placed."""
        host = []
        for member_batches in batches:
            rows = [next(member_batches) for _ in range(n)]
            host.append(rows[0] if n == 1 else jax.tree.map(lambda *x: np.stack(x), *rows))
        return self.program.place_batch(host, n)

    def compile(self, carry, batch, keys, n: int) -> None:
        """Compiles the program of `n` steps per call ahead of its first call, timed (and said
        when it was cached)."""
        compile_cache.count_hits()
        hits = compile_cache.hits()
        seconds = self.program.compile(carry, batch, keys, n)
        self.compile_sec = (self.compile_sec or 0.0) + seconds
        self.compiled.add(n)
        if self.is_writer:
            cached = " (cached)" if compile_cache.hits() > hits else ""
            what = "the training step" + (f" ({n} steps per call)" if n > 1 else "")
            self.progress.write(f"compiled {what} in {seconds:.1f} s{cached}")

    def check_finite(self, guards, metric_names: list[str]) -> None:
        for m, guard in zip(self.members, self.program.to_host(guards), strict=True):
            m.check_finite(guard, metric_names)

    def write_pending_log(self) -> int | None:
        """Reads the last log step's metrics (the loop's only per-interval host sync), checks
        its guards and writes every member's row; returns that step (None if none was due)."""
        if self.pending_log is None:
            return None
        done, metrics, guards = self.pending_log
        self.pending_log = None
        rows = self.program.to_host(metrics)
        now = time.perf_counter()
        rate = (done - self.last_step) / (now - self.last_time)
        self.last_time, self.last_step = now, done
        self.check_finite(guards, self.program.metric_names(metrics))
        for m, row in zip(self.members, rows, strict=True):
            m.log(done, row | {"steps_per_sec": rate})
        self.progress.update(done - self.progress.n)
        if len(self.members) == 1:
            self.progress.set_postfix({k: f"{v:.3g}" for k, v in rows[0].items()}, refresh=False)
        return done

    def evaluate_and_save(self, done: int, carry, metrics, is_eval: bool, is_save: bool) -> None:
        """Every member's evaluation and (asynchronous) save of step `done`, on finite states."""
        if self.write_pending_log() != done:  # a log step's guards are this carry's, checked
            self.check_finite(self.program.guards(carry), self.program.metric_names(metrics))
        for m, state in zip(self.members, self.program.states(carry), strict=True):
            if is_eval:
                m.evaluate(state, done)
            if is_save:
                m.save(done, state)
            m.state = state

    def finish(self, done: int) -> None:
        self.progress.update(done - self.progress.n)
        for m in self.members:
            m.finish(done, time.perf_counter() - self.began, self.compile_sec)

    def stop(self, done: int, signum: int) -> None:
        """Finishes every member at step `done` (just saved) and raises Preempted."""
        self.finish(done)
        where = (
            f"checkpoint saved in {self.members[0].checkpoints.directory}"
            if len(self.members) == 1
            else "checkpoints saved in every member's folder"
        )
        raise Preempted(
            f"stopped by {signal.Signals(signum).name} after step {done}; {where}. "
            "Run the same command again to resume.",
            signum,
        )
