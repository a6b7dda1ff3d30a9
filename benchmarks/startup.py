"""Seconds to a run's fresh training state in a new process, the `genimg` command's CPU settings
applied: `families.create_state` as it runs (one compiled program per network) against the same
initialisation op by op (under `jax.disable_jit()`, each operation compiled and run on its own),
fresh processes alternating over `--rounds`, no persistent compilation cache. Also prints a
hash of each config's floating-point state (weights, optimizer moments), to compare the initial
weights of two commits.

  .venv/bin/python benchmarks/startup.py --rounds 3
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = ("dcgan_mnist", "dcgan_mnist_uncond", "vae_mnist", "stylegan2_mnist")
MODES = ("op by op", "one program per network")


def first_state(name: str, mode: str) -> dict:
    """Builds configs/<name>.py's fresh state once in this process: seconds and a hash."""
    from genimg_jax.runtime import setup

    setup.tune_if_cpu()
    import jax
    import numpy as np

    from genimg_jax import families
    from genimg_jax.config import from_file

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = from_file(os.path.join(repo, "configs", f"{name}.py"))
    start = time.perf_counter()
    if mode == "op by op":
        with jax.disable_jit():
            state = families.create_state(config, jax.random.key(0))
    else:
        state = families.create_state(config, jax.random.key(0))
    leaves = [np.asarray(leaf) for leaf in jax.block_until_ready(jax.tree.leaves(state))]
    seconds = time.perf_counter() - start
    weights = [leaf.tobytes() for leaf in leaves if leaf.dtype.kind == "f"]  # not step's dtype
    digest = hashlib.sha256(b"".join(weights)).hexdigest()[:12]
    return {"seconds": seconds, "hash": digest}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(first_state(*args.child)))
        return 0
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_PLATFORMS"] = "cpu"
    runs = {(name, mode): [] for name in args.configs for mode in MODES}
    for _ in range(args.rounds):
        for (name, mode), results in runs.items():
            done = subprocess.run(
                [sys.executable, __file__, "--child", name, mode],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(done.stdout.splitlines()[-1]))
    print("| config | op by op (s) | one program per network (s) | ratio | state hash |")
    print("|---|---|---|---|---|")
    for name in args.configs:
        slow, fast = runs[name, MODES[0]], runs[name, MODES[1]]
        ratio = statistics.median(f["seconds"] / s["seconds"] for s, f in zip(slow, fast))
        print(
            f"| {name} | {statistics.median(s['seconds'] for s in slow):.2f} "
            f"| {statistics.median(f['seconds'] for f in fast):.2f} | {ratio:.2f}× "
            f"| {fast[0]['hash']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
