"""Divergence guard: records, on the device, the first step whose losses, gradient norms or
weights are not finite, so the loop can stop before saving a bad state without checking every
step on the host.

The step itself watches its metrics (every family's include each network's gradient norm, and an
optimizer step from finite gradients keeps finite weights finite), which costs nothing beside
the step. The weights, a pass over every parameter, are checked where the loop reads the guard:
at each log step and before each save (`check_weights`)."""

import jax
import jax.numpy as jnp

MAX_WATCHED = 31  # watched quantities are bits of one int32


def fresh() -> dict[str, jax.Array]:
    """No non-finite value seen yet."""
    return {"step": jnp.int32(-1), "mask": jnp.int32(0)}


def watched_names(network_names, metric_names: list[str], watch_metrics: bool) -> list[str]:
    """Names of the quantities the guard's mask bits stand for, in bit order (`network_names`:
    the family's names of the state's networks): each network's weights, then the metrics."""
    weights = [f"weights of the {name}" for name in network_names]
    return weights + (sorted(metric_names) if watch_metrics else [])


def _record(guard: dict, flags: list, first_bit: int, step) -> dict:
    """The guard with `flags` (bits from `first_bit`) recorded at `step`, unless it holds an
    earlier step already."""
    assert first_bit + len(flags) <= MAX_WATCHED
    mask = sum(
        (flag.astype(jnp.int32) << (first_bit + i) for i, flag in enumerate(flags)), jnp.int32(0)
    )
    first = (guard["step"] < 0) & (mask != 0)
    return {
        "step": jnp.where(first, step, guard["step"]).astype(jnp.int32),
        "mask": jnp.where(first, mask, guard["mask"]).astype(jnp.int32),
    }


def guarded(step_fn, networks, watch_metrics: bool = True):
    """(state, batch, key) -> (state, metrics) becomes ((state, guard), batch, key) ->
    ((state, guard), metrics), the guard watching the metrics; `networks(state)`: {name:
    TrainState} (the family's, whose count places the metrics' bits); `watch_metrics=False`
    (skip_nonfinite) watches nothing here, the weights only in `check_weights`."""

    def step(carry, batch, key):
        state, guard = carry
        new_state, metrics = step_fn(state, batch, key)
        # metrics by sorted name: the order the host reads them back in (jax sorts dict keys)
        flags = (
            [~jnp.all(jnp.isfinite(metrics[k])) for k in sorted(metrics)] if watch_metrics else []
        )
        guard = _record(guard, flags, len(networks(new_state)), state.step + 1)
        return (new_state, guard), metrics

    return step


def check_weights(carry, networks) -> dict:
    """The guard of `carry` = (state, guard) with each of `networks(state)`'s weights checked:
    a non-finite one is recorded at the state's step (when the guard holds no earlier step)."""
    state, guard = carry
    flags = [
        ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(net.params)]))
        for net in networks(state).values()
    ]
    return _record(guard, flags, 0, state.step)


def describe(guard: dict, names: list[str]) -> tuple[int, list[str]] | None:
    """(first bad step, the non-finite quantities) from a host copy of the guard, or None."""
    step, mask = int(guard["step"]), int(guard["mask"])
    if step < 0:
        return None
    return step, [name for i, name in enumerate(names) if mask >> i & 1]
