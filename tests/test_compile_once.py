"""A real training run compiles its step once: nothing is compiled again as the run crosses more
steps, logs, evaluations and checkpoints, and a resumed run compiles its step once too. Nor does
it wait for the device between logs: it reads from the device only at an evaluation or checkpoint
and, one step late (the next step already queued), at a log step, and the row it logs is that log
step's metrics.

Compilations are counted with JAX's own instrumentation: `jax.log_compiles` logs one
"Compiling jit(NAME) ..." record per XLA compilation (NAME: the jitted function's name), and the
`/jax/core/compile/backend_compile_duration` monitoring event fires once per backend compile.
Each run starts from cold caches (`jax.clear_caches()`), as a run in a new process would.
"""

import collections
import json
import logging
import os
import re
from typing import NamedTuple, Self

import flax.linen as nn
import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_config

from genimg_jax import families
from genimg_jax.core import state as state_lib
from genimg_jax.data import pipeline
from genimg_jax.runtime import parallel
from genimg_jax.training import guard as guard_lib
from genimg_jax.training import loop as trainer
from genimg_jax.training import programs
from genimg_jax.training.checkpoint import Checkpoints

FAMILIES = ["dcgan_mnist", "vae_mnist"]
# The loop jits `guard.guarded(step)`: the name JAX logs for the training step.
STEP_NAME = guard_lib.guarded(lambda state, batch, key: (state, {}), dict).__name__
COMPILING = re.compile(r"Compiling jit\((?P<name>[^)]*)\)")
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter(logging.Handler):
    """Compilations by jitted-function name (from `jax.log_compiles` records) and backend
    compiles in total (from `jax.monitoring`), while active."""

    _backend_listener_installed = False
    active: "CompileCounter | None" = None

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.by_name: collections.Counter = collections.Counter()
        self.backend_compiles = 0

    def emit(self, record: logging.LogRecord) -> None:
        match = COMPILING.match(record.getMessage())
        if match:
            self.by_name[match["name"]] += 1

    def snapshot(self) -> tuple[int, int]:
        """(compilations of the training step, backend compiles) so far."""
        return self.by_name[STEP_NAME], self.backend_compiles

    @classmethod
    def _on_duration(cls, event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT and cls.active is not None:
            cls.active.backend_compiles += 1

    def __enter__(self) -> Self:
        if not CompileCounter._backend_listener_installed:  # listeners cannot be removed
            jax.monitoring.register_event_duration_secs_listener(CompileCounter._on_duration)
            CompileCounter._backend_listener_installed = True
        CompileCounter.active = self
        logging.getLogger("jax").addHandler(self)
        self._log_compiles = jax.log_compiles(True)
        self._log_compiles.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._log_compiles.__exit__(*exc)
        logging.getLogger("jax").removeHandler(self)
        CompileCounter.active = None


class Run(NamedTuple):
    """What one `train_and_evaluate` call compiled, in total and before each of its steps, and
    when it read from the device."""

    total: CompileCounter
    before_step: list[tuple[int, int]]  # per step: the counter's snapshot when its batch is drawn
    start: int  # the step the run resumed from
    step_metrics: list  # per dispatched step: the metrics it returned (device arrays)
    reads_after: set[int]  # steps (1-based, global) dispatched when the loop read from the device
    logged: dict[int, dict]  # metrics.jsonl's rows by step
    summary: dict  # summary.json as the run left it


def _run(name: str, workdir: str, steps: int) -> Run:
    """Trains configs/<name>.py:quick (log every 4, evaluate and save every 6) to `steps` in
    `workdir` on one device, from cold caches; records what was compiled before each step, and
    the steps dispatched at each read of device values (`Strategy.host_metrics`)."""
    config = load_config(name)
    config.parallel.num_devices = 1
    config.train.steps = steps
    start = steps - 12
    before_step: list[tuple[int, int]] = []
    step_metrics: list = []
    reads_after: set[int] = set()
    iterate = pipeline.Batches.iterate
    compiled_strategy = programs.compiled_strategy

    def counting_iterate(self, *args, **kwargs):
        for batch in iterate(self, *args, **kwargs):
            before_step.append(counter.snapshot())
            yield batch

    def recording_strategy(*args) -> programs.Strategy:
        strategy = compiled_strategy(*args)

        def steps(n: int):
            assert n == 1, "these runs take one step per call"

            def step(*step_args):
                carry, metrics = strategy.steps(n)(*step_args)
                step_metrics.append(metrics)
                return carry, metrics

            return step

        def host_metrics(tree):
            reads_after.add(start + len(step_metrics))
            return strategy.host_metrics(tree)

        return strategy._replace(steps=steps, host_metrics=host_metrics)

    jax.clear_caches()
    with pytest.MonkeyPatch.context() as patch, CompileCounter() as counter:
        patch.setattr(pipeline.Batches, "iterate", counting_iterate)
        patch.setattr(programs, "compiled_strategy", recording_strategy)
        trainer.train_and_evaluate(config, workdir)
    assert len(before_step) == 12, "the loop no longer draws its batches with Batches.iterate"
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = {row["step"]: row for row in map(json.loads, f)}
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    return Run(counter, before_step, start, step_metrics, reads_after, logged, summary)


@pytest.fixture(scope="module", params=FAMILIES)
def runs(request, tmp_path_factory) -> dict[str, Run]:
    """Per family: a fresh 12-step run, then its workdir resumed to 24 steps."""
    workdir = str(tmp_path_factory.mktemp(request.param))
    return {
        "fresh, steps 1-12": _run(request.param, workdir, 12),
        "resumed, steps 13-24": _run(request.param, workdir, 24),
    }


def test_training_step_compiles_exactly_once_per_run(runs):
    counts = {name: run.total.by_name[STEP_NAME] for name, run in runs.items()}
    assert counts == {name: 1 for name in runs}, f"compilations of jit({STEP_NAME}): {counts}"


@pytest.mark.parametrize("run", ["fresh, steps 1-12", "resumed, steps 13-24"])
def test_nothing_compiles_after_the_first_log_evaluation_and_checkpoint(runs, run):
    run = runs[run]
    final = run.total.snapshot()
    # the step compiles at its first call, not at a later one
    assert [step for step, _ in run.before_step[1:]] == [final[0]] * 11
    # From the 8th step on (after the first log, 4 steps in, and the first evaluation and
    # checkpoint, 6 steps in) nothing compiles, across 2 more logs, evaluations and checkpoints:
    # the compilations of 12 steps are those of 7.
    assert run.before_step[7] == final


@pytest.mark.parametrize(
    "run, reads_after",
    [
        # logs at 4, 8, 12; evaluations and checkpoints at 6, 12 (and at the last step)
        ("fresh, steps 1-12", {5, 6, 9, 12}),
        ("resumed, steps 13-24", {17, 18, 21, 24}),
    ],
)
def test_the_loop_reads_the_device_only_at_events_and_a_log_one_step_late(runs, run, reads_after):
    assert runs[run].reads_after == reads_after


@pytest.mark.parametrize("run", ["fresh, steps 1-12", "resumed, steps 13-24"])
def test_a_deferred_log_row_holds_its_own_steps_metrics(runs, run):
    run = runs[run]
    for step in (run.start + 4, run.start + 8, run.start + 12):
        own = jax.tree.map(np.asarray, run.step_metrics[step - run.start - 1])
        row = run.logged[step]
        assert set(own) <= set(row)
        for name, value in own.items():
            np.testing.assert_allclose(row[name], value, rtol=1e-6, err_msg=f"{name} @ {step}")


def test_the_summary_reports_the_seconds_spent_compiling_the_step(runs):
    fresh, resumed = runs["fresh, steps 1-12"].summary, runs["resumed, steps 13-24"].summary
    # each run compiled its step once from cold caches: seconds of its wall time (summed over
    # the resume, as the wall time is)
    assert 0.2 < fresh["compile_sec"] < fresh["wall_time_sec"]
    assert fresh["compile_sec"] + 0.2 < resumed["compile_sec"] < resumed["wall_time_sec"]


def test_a_fresh_state_initialises_each_network_as_one_program():
    """Op by op, a new process compiled each layer's initialisers one at a time (~150 programs
    for the main job's G and D, seconds at a run's start); `create_train_state` compiles one
    program per network, beside a few for the keys and the dummy inputs."""
    config = load_config("dcgan_mnist")
    jax.clear_caches()
    with CompileCounter() as counter:
        families.create_state(config, jax.random.key(0))
    assert counter.by_name["build_train_state"] == 2, dict(counter.by_name)
    assert sum(counter.by_name.values()) <= 10, dict(counter.by_name)


def test_saving_a_state_replicated_over_eight_host_devices_compiles_nothing(tmp_path):
    """orbax's replica-parallel save split each replicated array into a slice per device, each
    slice an op compiled and run on the host (187 programs for a quick VQGAN's 4 saves); on CPU
    each array is written whole from one device, and restores to the same values."""
    config = load_config("dcgan_mnist")
    mesh = parallel.make_mesh(8)
    state = parallel.replicate_global(families.create_state(config, jax.random.key(0)), mesh)
    checkpoints = Checkpoints(str(tmp_path), 1)
    with CompileCounter() as counter:
        checkpoints.save(1, state)
        checkpoints.wait()
    assert counter.backend_compiles == 0, dict(counter.by_name)
    restored = checkpoints.restore(state)
    checkpoints.close()
    assert jax.tree.all(
        jax.tree.map(np.array_equal, jax.device_get(restored), jax.device_get(state))
    )


def test_a_network_with_an_unhashable_field_initialises_as_its_hashable_twin():
    """A user's module with a list field cannot key the cached builder: it gets a program of its
    own, with the same weights."""

    class Stack(nn.Module):
        widths: list | tuple

        @nn.compact
        def __call__(self, x):
            for width in self.widths:
                x = nn.Dense(width)(x)
            return x

    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    build = lambda widths: state_lib.create_train_state(
        Stack(widths), tx, 1e-3, jax.random.key(0), jnp.zeros((1, 4))
    )
    listed, tupled = build([3, 2]), build((3, 2))
    assert jax.tree.all(jax.tree.map(np.array_equal, listed.params, tupled.params))
    assert float(listed.opt_state.hyperparams["learning_rate"]) == np.float32(1e-3)
