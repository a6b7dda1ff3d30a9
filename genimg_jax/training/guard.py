"""Divergence guard: records, inside the compiled step, the first step whose losses, gradient
norms or weights are not finite, so the loop can stop before saving a bad state without
checking every step on the host."""

import jax
import jax.numpy as jnp

MAX_WATCHED = 31  # watched quantities are bits of one int32


def fresh() -> dict[str, jax.Array]:
    """No non-finite value seen yet."""
    return {"step": jnp.int32(-1), "mask": jnp.int32(0)}


def watched_names(network_names, metric_names: list[str], watch_metrics: bool) -> list[str]:
    """Names of the quantities the guard's mask bits stand for, in bit order (`network_names`:
    the family's names of the state's networks)."""
    weights = [f"weights of the {name}" for name in network_names]
    return (sorted(metric_names) if watch_metrics else []) + weights


def guarded(step_fn, networks, watch_metrics: bool = True):
    """(state, batch, key) -> (state, metrics) becomes ((state, guard), batch, key) ->
    ((state, guard), metrics); `networks(state)`: {name: TrainState} (the family's);
    `watch_metrics=False` (skip_nonfinite) watches weights only."""

    def step(carry, batch, key):
        state, guard = carry
        new_state, metrics = step_fn(state, batch, key)
        # metrics by sorted name: the order the host reads them back in (jax sorts dict keys)
        flags = (
            [~jnp.all(jnp.isfinite(metrics[k])) for k in sorted(metrics)] if watch_metrics else []
        )
        flags += [
            ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(net.params)]))
            for net in networks(new_state).values()
        ]
        assert len(flags) <= MAX_WATCHED
        mask = sum(flag.astype(jnp.int32) << i for i, flag in enumerate(flags))
        first = (guard["step"] < 0) & (mask != 0)
        guard = {
            "step": jnp.where(first, state.step + 1, guard["step"]).astype(jnp.int32),
            "mask": jnp.where(first, mask, guard["mask"]).astype(jnp.int32),
        }
        return (new_state, guard), metrics

    return step


def describe(guard: dict, names: list[str]) -> tuple[int, list[str]] | None:
    """(first bad step, the non-finite quantities) from a host copy of the guard, or None."""
    step, mask = int(guard["step"]), int(guard["mask"])
    if step < 0:
        return None
    return step, [name for i, name in enumerate(names) if mask >> i & 1]
