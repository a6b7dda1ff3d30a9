"""Forward+backward time of flax's nn.ConvTranspose vs genimg_jax's ConvTranspose on DCGAN shapes.

Run: `.venv/bin/python benchmarks/conv_transpose.py [--quick] [--dtype bfloat16]`. Each step is
a jitted value-and-grad (w.r.t. params and input) of a random linear functional of the output;
timings are medians over interleaved repeats after a warm-up.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

try:
    from genimg_jax.models.layers import ConvTranspose
except ModuleNotFoundError:  # a checkout without `pip install -e .`: import from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from genimg_jax.models.layers import ConvTranspose
from genimg_jax.runtime import setup as runtime_setup

runtime_setup.tune_if_cpu()  # what the `genimg` command applies, before JAX starts

# (batch, size, in_channels, out_channels): [B, S, S, I] -> [B, 2S, 2S, O], kernel 4, stride 2
SHAPES = [(64, 4, 256, 128), (64, 8, 128, 64), (64, 16, 64, 1)]


def make_step(layer: nn.Module, x: jax.Array) -> tuple[Callable, dict]:
    """A jitted step (params, x, probe) -> (loss, (dparams, dx)) and the layer's params."""
    params = layer.init(jax.random.key(0), x)

    def loss(p: dict, v: jax.Array, probe: jax.Array) -> jax.Array:
        return jnp.vdot(probe, layer.apply(p, v).astype(jnp.float32))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), params


def time_once(step: Callable, *args: jax.Array | dict) -> float:
    """Wall time of one step in ms, waiting for the result."""
    start = time.perf_counter()
    jax.block_until_ready(step(*args))
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    """Time every shape, print one line each and the overall speedup."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    repeats, warmup = (5, 1) if args.quick else (30, 3)
    dtype = jnp.dtype(args.dtype)
    print(f"backend={jax.default_backend()} dtype={args.dtype} repeats={repeats}")

    steps = {}
    for batch, size, cin, cout in SHAPES:
        x = jax.random.normal(jax.random.key(1), (batch, size, size, cin))  # [B, S, S, I]
        probe = jax.random.normal(jax.random.key(2), (batch, 2 * size, 2 * size, cout))
        flax_layer = nn.ConvTranspose(
            cout, (4, 4), (2, 2), padding="SAME", transpose_kernel=True, dtype=dtype
        )
        flax_step, params = make_step(flax_layer, x)
        our_step, our_params = make_step(ConvTranspose(cout, dtype=dtype), x)
        assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, our_params)
        args = (params, x, probe)
        (_, flax_grads), (_, our_grads) = flax_step(*args), our_step(*args)
        tol = 1e-3 if dtype == jnp.float32 else 5e-2
        for want, got in zip(jax.tree.leaves(flax_grads), jax.tree.leaves(our_grads)):
            rel = float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))
            assert rel < tol, f"gradients differ ({rel:.2e}) for shape {(batch, size, cin, cout)}"
        steps[(batch, size, cin, cout)] = {"flax": flax_step, "ours": our_step, "args": args}

    times = {key: {"flax": [], "ours": []} for key in steps}
    for i in range(warmup + repeats):
        for key, entry in steps.items():
            for name in ("flax", "ours"):
                ms = time_once(entry[name], *entry["args"])
                if i >= warmup:
                    times[key][name].append(ms)

    total = {"flax": 0.0, "ours": 0.0}
    for (batch, size, cin, cout), entry in times.items():
        flax_ms, ours_ms = np.median(entry["flax"]), np.median(entry["ours"])
        total["flax"] += flax_ms
        total["ours"] += ours_ms
        print(
            f"B={batch} {size}x{size}x{cin}->{2 * size}x{2 * size}x{cout}: "
            f"flax_ms={flax_ms:.2f} ours_ms={ours_ms:.2f} ratio={flax_ms / ours_ms:.2f}"
        )
    print(f"speedup={total['flax'] / total['ours']:.2f}")


if __name__ == "__main__":
    main()
