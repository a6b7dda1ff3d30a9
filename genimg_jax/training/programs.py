"""How the training steps of K >= 1 members run on the devices. A member is one run; the members
of one program differ only in hyperparameters (seed and the family's traced ones: learning
rates, β), so one compiled step serves them all. A solo run is K = 1.

Two ways, chosen by the sweep's mode ("auto": "sequential" on CPU, "vmap" on GPU/TPU):

- **Solo steps** ("sequential", and every solo run): each member's state is replicated over the
  mesh's D devices and its batch split over them (data parallel, `parallel.strategy` "jit" or
  "pmap"); the one compiled step is called for each member in turn, so every member uses all
  D devices. Measured on a 2-core CPU (benchmarks/sweep.py, conv VAE, K=8): vmap 5-10x, lax.map
  23-33x and an unrolled program 1.6x slower than this, because XLA:CPU's fast convolution path
  does not take per-member (grouped) weights and one member already keeps the cores busy.
- **Stacked steps** ("vmap", "map", "unroll"): the K states, batches and keys are stacked on a
  leading axis and run as one program on a 2-D mesh `members x data` of m = gcd(K, D) rows of
  D / m devices: the member axis is split over the rows and each member's batch over the D / m
  devices of its row. So K >= D (D dividing K) spreads members over devices with no
  cross-device reduction at all, and K < D runs each member data parallel on D / m devices.
  On accelerators one small model leaves the chip idle, and vmap fills it.
"""

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genimg_jax import families
from genimg_jax.core.errors import ConfigError
from genimg_jax.runtime import parallel
from genimg_jax.training import guard as guard_lib

MODES = ("auto", "sequential", "vmap", "unroll", "map")
MEMBERS = "members"  # the stacked programs' mesh axis of members


def resolve_mode(mode: str) -> str:
    """The mode to run: "auto" is "vmap" on GPU/TPU and "sequential" on CPU."""
    if mode not in MODES:
        raise ConfigError(f"vectorize mode {mode!r}; use one of {list(MODES)}")
    if mode == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "vmap"
    return mode


def check_vectorizable(configs: list[ml_collections.ConfigDict]) -> None:
    """Raises ConfigError unless the members differ only in hyperparameters."""
    if len({families.static_key(c) for c in configs}) > 1:
        raise ConfigError(
            "--vectorize needs members that differ only in "
            f"{', '.join(families.hyperparameters(configs[0]))}; this sweep also varies other "
            "fields. Run it without --vectorize."
        )


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


def guarded_step(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Callable:
    """The family's training step with the divergence guard: ((state, guard), batch, key) ->
    ((state, guard), metrics)."""
    return guard_lib.guarded(
        families.make_train_step(config, axis_name),
        families.of(config).networks,
        watch_metrics=not config.train.skip_nonfinite,
    )


def weights_check(config: ml_collections.ConfigDict) -> Callable:
    """(state, guard) -> the guard with every network's weights checked (`guard.check_weights`):
    run where the loop reads the guard (log steps, before saving), not in every step."""
    return functools.partial(guard_lib.check_weights, networks=families.of(config).networks)


def repeated(step: Callable, n: int) -> Callable:
    """`n` steps in one call, `lax.scan` over batches stacked on a leading axis of `n`:
    (carry, batches, key) -> (carry, the last step's metrics). Each step computes what a call
    of `step` does (the key is the run's; steps draw by `state.step`), to float rounding: XLA
    compiles the loop body on its own (other layouts for the convolutions' gradients)."""
    if n == 1:
        return step

    def steps(carry, batches, key):
        carry, metrics = jax.lax.scan(lambda c, b: step(c, b, key), carry, batches)
        return carry, jax.tree.map(lambda m: m[-1], metrics)

    steps.__name__ = f"{step.__name__}_x{n}"
    return steps


def timed_compile(step: Callable, *args: Any) -> float:
    """Compiles the jitted or pmapped `step` for `args` ahead of its first call, which then runs
    the same executable; returns the seconds that took (near 0 where this process had compiled
    it already, as for the later runs of an in-process sweep)."""
    start = time.perf_counter()
    step.lower(*args).compile()
    return time.perf_counter() - start


class Strategy(NamedTuple):
    """How one member's state and batch are placed on the mesh and its compiled step run."""

    place_state: Callable[[Any], Any]  # replicated global state -> the step's layout
    # (this process's rows, n) -> the layout of n steps' batches (on_one_cpu_device: the rows)
    place_batch: Callable[..., Any]
    # n -> the compiled program of n steps per call (`repeated`): (placed state, placed batch,
    # key) -> (placed state, the last step's metrics)
    steps: Callable[[int], Callable]
    check_weights: Callable  # placed (state, guard) -> its guard with the weights checked
    gather_state: Callable[[Any], Any]  # the step's layout -> replicated global state
    host_metrics: Callable[[Any], dict]  # metrics -> NumPy scalars
    compile: Callable[..., float]  # (n, placed state, placed batch, key) -> seconds compiling


def on_one_cpu_device(mesh: Mesh) -> bool:
    """Whether `mesh` is one CPU device of a one-process run. There the "jit" strategy hands the
    step its batch as host arrays and the jitted call places them, in C++: `jax.device_put` of a
    batch (flattening it, one abstract value per array, a sharded transfer) took 4x the host time
    of the call's own placement of the same arrays (25 vs 107 us at idle, more while a step runs
    on the same cores). Host memory is the device's, so there is nothing to place ahead of use;
    on an accelerator, and over several devices, batches are placed before the call."""
    device = mesh.devices.flat[0]
    return mesh.size == 1 and jax.process_count() == 1 and device.platform == "cpu"


def make_strategy(config: ml_collections.ConfigDict, mesh: Mesh) -> Strategy:
    """`parallel.strategy`: "jit" (global arrays sharded over the mesh) or "pmap" (the same
    step mapped over local devices with cross-device means) of the guarded step
    (`guarded_step`). Both compile each program once."""
    step_fn, check = functools.partial(guarded_step, config), weights_check(config)
    if config.parallel.strategy == "jit":
        out = parallel.replicated(mesh)
        place_batch = functools.partial(parallel.global_batch, mesh=mesh)
        if on_one_cpu_device(mesh):
            place_batch = lambda local_batch, steps=1: local_batch

        @functools.cache
        def steps(n: int) -> Callable:
            return jax.jit(repeated(step_fn(None), n), donate_argnums=0, out_shardings=out)

        return Strategy(
            place_state=lambda s: s,
            place_batch=place_batch,
            steps=steps,
            check_weights=jax.jit(check, out_shardings=out),
            gather_state=lambda s: s,
            host_metrics=parallel.to_host,
            compile=lambda n, *args: timed_compile(steps(n), *args),
        )

    @functools.cache
    def steps(n: int) -> Callable:
        return jax.pmap(
            repeated(step_fn(parallel.AXIS), n),
            axis_name=parallel.AXIS,
            in_axes=(0, 0, None),
            donate_argnums=0,
            devices=parallel.local_devices(mesh),
        )

    return Strategy(
        place_state=functools.partial(parallel.pmap_replicate, mesh=mesh),
        place_batch=functools.partial(parallel.pmap_shard, mesh=mesh),
        steps=steps,
        check_weights=jax.pmap(check, devices=parallel.local_devices(mesh)),
        gather_state=functools.partial(parallel.pmap_unreplicate, mesh=mesh),
        host_metrics=lambda m: jax.tree.map(lambda x: np.asarray(x[0]), m),
        compile=lambda n, *args: timed_compile(steps(n), *args),
    )


_STRATEGIES: dict[tuple, Strategy] = {}


def compiled_strategy(config: ml_collections.ConfigDict, mesh: Mesh) -> Strategy:
    """The strategy (and its compiled step) for `config` on `mesh`, shared by every run in this
    process that differs only in hyperparameters: a sweep run in-process compiles its step
    once."""
    key = (families.static_key(config), tuple(d.id for d in mesh.devices.flat))
    if key not in _STRATEGIES:
        _STRATEGIES[key] = make_strategy(config, mesh)
    return _STRATEGIES[key]


class Program(Protocol):
    """What the loop asks of the program running K members' steps (`for_members`): the carry is
    every member's (state, guard), laid out for the compiled step; batches, keys, metrics and
    guards hold K members' in the program's own layout."""

    def place(self, states: list) -> Any:
        """K replicated global states (and fresh guards) -> the carry."""

    def place_batch(self, batches: list[dict], n: int = 1) -> Any:
        """K members' batches of this process (of `n` steps: stacked on a leading axis of n)
        -> the step's input."""

    def place_keys(self, keys: list) -> Any:
        """K members' training keys -> the step's input."""

    def compile(self, carry, batch, keys, n: int = 1) -> float:
        """Compiles the step of `n` steps per call for these arguments; the seconds it took."""

    def step(self, carry, batch, keys, n: int = 1) -> tuple[Any, Any]:
        """`n` training steps of every member in one call: (carry, the last step's metrics).
        On XLA:CPU with several local devices it returns when the steps have run
        (`parallel.one_program_at_a_time`)."""

    def guards(self, carry) -> Any:
        """The members' divergence guards in `carry`, with their weights checked (new
        buffers: the next step may take the carry's)."""

    def metric_names(self, metrics) -> list[str]:
        """The names of a step's metrics."""

    def states(self, carry) -> list:
        """Each member's state as global arrays replicated over the mesh."""

    def to_host(self, tree) -> list[dict]:
        """Metrics or guards -> one dict of host values per member."""


class SoloSteps:
    """K members, each run by the solo strategy in turn (see the module doc). Carries, batches,
    keys, metrics and guards are lists of K. A `Program`."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh):
        parallel.check_batch_size(config.train.batch_size, mesh.size)
        self.mesh, self.strategy = mesh, compiled_strategy(config, mesh)
        self.one_at_a_time = parallel.one_program_at_a_time(mesh)

    def place(self, states: list) -> list:
        fresh = guard_lib.fresh()  # a guard of its own per member: the step donates its carry
        return [
            self.strategy.place_state((s, parallel.replicate_global(fresh, self.mesh)))
            for s in states
        ]

    def place_batch(self, batches: list[dict], n: int = 1) -> list:
        return [self.strategy.place_batch(b, steps=n) for b in batches]

    def place_keys(self, keys: list) -> list:
        return [parallel.replicate_global(k, self.mesh) for k in keys]

    def compile(self, carry: list, batch: list, keys: list, n: int = 1) -> float:
        return self.strategy.compile(n, carry[0], batch[0], keys[0])

    def step(self, carry: list, batch: list, keys: list, n: int = 1) -> tuple[list, list]:
        step, outs = self.strategy.steps(n), []
        for args in zip(carry, batch, keys, strict=True):
            outs.append(step(*args))
            if self.one_at_a_time:
                jax.block_until_ready(outs[-1][0])
        return [c for c, _ in outs], [m for _, m in outs]

    def guards(self, carry: list) -> list:
        return [self.strategy.check_weights(c) for c in carry]

    def metric_names(self, metrics: list) -> list[str]:
        return sorted(metrics[0])

    def states(self, carry: list) -> list:
        """Each member's state as global arrays replicated over the mesh."""
        return [self.strategy.gather_state(c)[0] for c in carry]

    def to_host(self, trees: list) -> list[dict]:
        return [self.strategy.host_metrics(t) for t in trees]


class StackedSteps:
    """K members as one program over stacked arguments on a `members x data` mesh (see the
    module doc). Carries, batches, keys, metrics and guards have a leading axis of K. A
    `Program`."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh, k: int, mode: str):
        if jax.process_count() > 1:
            raise ConfigError(
                f"vectorize mode {mode!r} runs in one process; use mode 'sequential' (members "
                "in turn, each over every device of every process) in a multi-process run"
            )
        rows = math.gcd(k, mesh.size)
        grid = Mesh(mesh.devices.reshape(rows, mesh.size // rows), (MEMBERS, parallel.AXIS))
        parallel.check_batch_size(config.train.batch_size, mesh.size // rows)
        self.k, self.mesh = k, mesh
        self.one_at_a_time = parallel.one_program_at_a_time(mesh)
        self.members = NamedSharding(grid, PartitionSpec(MEMBERS))
        self.batches = NamedSharding(grid, PartitionSpec(MEMBERS, parallel.AXIS))
        self.step_batches = NamedSharding(grid, PartitionSpec(None, MEMBERS, parallel.AXIS))
        self._steps = functools.partial(_stacked_step, config, mode, self.members)
        self._check = jax.jit(jax.vmap(weights_check(config)), out_shardings=self.members)
        self._stack = jax.jit(stack, out_shardings=self.members)
        self._take = jax.jit(
            lambda tree, i: jax.tree.map(lambda x: x[i], tree),
            out_shardings=parallel.replicated(mesh),
        )

    def place(self, states: list):
        fresh = parallel.replicate_global(guard_lib.fresh(), self.mesh)
        return self._stack([(s, fresh) for s in states])

    def place_batch(self, batches: list[dict], n: int = 1):
        stacked = jax.tree.map(lambda *xs: np.stack(xs, axis=int(n > 1)), *batches)
        return jax.device_put(stacked, self.step_batches if n > 1 else self.batches)

    def place_keys(self, keys: list):
        return jax.device_put(np.stack(keys), self.members)

    def compile(self, carry, batch, keys, n: int = 1) -> float:
        return timed_compile(self._steps(n), carry, batch, keys)

    def step(self, carry, batch, keys, n: int = 1):
        carry, metrics = self._steps(n)(carry, batch, keys)
        if self.one_at_a_time:
            jax.block_until_ready(carry)
        return carry, metrics

    def guards(self, carry):
        return self._check(carry)

    def metric_names(self, metrics: dict) -> list[str]:
        return sorted(metrics)

    def states(self, carry) -> list:
        states = []
        for i in range(self.k):
            states.append(self._take(carry[0], jnp.int32(i)))
            if self.one_at_a_time:
                jax.block_until_ready(states[-1])
        return states

    def to_host(self, tree) -> list[dict]:
        host = jax.device_get(tree)
        return [unstack(host, i) for i in range(self.k)]


_STACKED: dict[tuple, Callable] = {}


def _stacked_step(config, mode: str, members: NamedSharding, n: int = 1) -> Callable:
    """The jitted stacked step of `n` steps per call, shared by configs equal to `config` up to
    hyperparameters."""
    key = (families.static_key(config), mode, members, n)
    if key not in _STACKED:
        step = repeated(vectorize(guarded_step(config), mode), n)
        _STACKED[key] = jax.jit(step, donate_argnums=0, out_shardings=members)
    return _STACKED[key]


def for_members(
    config: ml_collections.ConfigDict, mesh: Mesh, k: int, mode: str = "auto"
) -> Program:
    """The program running K members of `config` on `mesh` in `mode` (see the module doc)."""
    mode = resolve_mode(mode)
    if mode == "sequential" or k == 1:
        return SoloSteps(config, mesh)
    return StackedSteps(config, mesh, k, mode)
