"""The divergence guard's cost per step: the bare step against the guarded step watching its
metrics only (what every step runs) and against one also checking every weight (what every step
ran before the weights moved to log steps and saves).

Run: `.venv/bin/python benchmarks/guard_cost.py [--rounds 6] [--calls 200] [--batch 4]
[--image-size 16]` (the main job's networks; the default sizes are `loop_overhead.py --tiny`'s
millisecond step, where the guard weighs most). The three programs run `--calls` donated calls
each, alternating, `--rounds` times; it prints each program's ms per step per round and the
median over rounds of its ratio to the bare step in the same round.
"""

import argparse
import os
import sys
import time

try:
    import genimg_jax  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: import from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg_jax.runtime import setup as runtime_setup

runtime_setup.tune_if_cpu()  # what the `genimg` command applies, before JAX starts

import jax
import numpy as np

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.runtime import parallel
from genimg_jax.training import guard as guard_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=16)
    args = parser.parse_args()

    config = config_lib.from_file(os.path.join(REPO, "configs", "dcgan_mnist.py"))
    config.train.batch_size, config.data.image_size = args.batch, args.image_size
    config.parallel.num_devices = 1
    mesh, family = parallel.make_mesh(1), families.of(config)
    b, s = args.batch, args.image_size
    rng = np.random.default_rng(0)
    batch = jax.device_put(
        {
            "image": rng.uniform(-1, 1, (b, s, s, 1)).astype(np.float32),
            "label": np.arange(b, dtype=np.int32) % 10,
        }
    )
    key = jax.random.PRNGKey(0)
    step = families.make_train_step(config)

    def weights_too(carry, batch, key):  # the guard as it was: metrics and every weight
        (state, guard), metrics = guard_lib.guarded(step, family.networks)(carry, batch, key)
        return (state, guard_lib.check_weights((state, guard), family.networks)), metrics

    programs = {
        "bare step": (step, lambda: families.initial_state(config, mesh)),
        "guard: metrics (every step now)": (
            guard_lib.guarded(step, family.networks),
            lambda: (families.initial_state(config, mesh), guard_lib.fresh()),
        ),
        "guard: metrics and weights (before)": (
            weights_too,
            lambda: (families.initial_state(config, mesh), guard_lib.fresh()),
        ),
    }
    compiled = {name: jax.jit(fn, donate_argnums=0) for name, (fn, _) in programs.items()}
    carries = {name: init() for name, (_, init) in programs.items()}
    times: dict[str, list[float]] = {name: [] for name in programs}
    print(f"configs/dcgan_mnist.py networks, {s}x{s}, batch {b}, {jax.default_backend()}")
    for r in range(args.rounds + 1):  # round 0 compiles and warms up
        for name in programs:
            carry = carries[name]
            start = time.perf_counter()
            for _ in range(args.calls):
                carry, metrics = compiled[name](carry, batch, key)
            jax.block_until_ready((carry, metrics))
            carries[name] = carry
            if r:
                times[name].append((time.perf_counter() - start) / args.calls)
    bare = np.asarray(times["bare step"])
    for name, t in times.items():
        ratio = float(np.median(np.asarray(t) / bare))
        rounds = " ".join(f"{x * 1e3:.2f}" for x in t)
        print(f"{name:<38} ms/step by round: {rounds}   median ratio to bare: {ratio:.3f}")


if __name__ == "__main__":
    main()
