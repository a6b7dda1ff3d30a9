"""Sweep throughput: K members one after another vs as one vectorized program, measured in the
same process, plus a whole short sweep in-process vs as K separate `genimg train` processes.

    python benchmarks/sweep.py            # K = 8, 16; conv VAE and MLP VAE on bundled_mnist
    python benchmarks/sweep.py --quick    # fewer repeats, K = 8 only for the process comparison

Prints, per model and K: one solo step (ms), K sequential solo steps (ms), the K-member
vectorized step in the backend's mode ("sequential" on CPU, "vmap" on accelerators) and in the
other modes, and their ratios (`programs.for_members`, the trainer's own code path). The last line is `vectorized_over_sequential=X`, the worst ratio of the
default (auto) mode over models and K: at most 1.0 means vectorizing never loses.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax
import jax.numpy as jnp
import numpy as np

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.runtime import parallel
from genimg_jax.runtime import setup as runtime_setup
from genimg_jax.sweeps import run as sweep_run
from genimg_jax.sweeps import spec as sweep
from genimg_jax.training import programs

runtime_setup.tune_if_cpu()  # what the `genimg` command applies, before JAX starts


def load_config(name: str):
    """configs/<name>.py's get_config()."""
    return config_lib.from_file(os.path.join(REPO, "configs", f"{name}.py"))


def model_config(family: str):
    """The conv VAE of configs/vae_mnist.py, or the same with an MLP VAE."""
    config = load_config("vae_mnist")
    config.parallel.num_devices = 1
    if family == "mlp_vae":
        config.model.family = "mlp_vae"
        config.model.hidden = 512
    return config


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms of each callable, timed in rotation so that load changes hit all alike."""
    for fn in fns.values():
        fn()  # compile and warm
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def step_times(config, k: int, repeats: int, modes: tuple[str, ...]) -> dict[str, float]:
    """ms for one solo step, K solo steps in sequence, and the K-member step in each mode."""
    mesh = parallel.make_mesh(1)
    states = []
    for i in range(k):
        c = sweep.apply(config, {"seed": i, "train.lr": 1e-3 * (1 + i % 3)})
        states.append(families.initial_state(c, mesh))
    b = config.train.batch_size
    shape = (b, config.data.image_size, config.data.image_size, config.data.channels)
    rng = np.random.default_rng(0)
    batches = [{"image": rng.uniform(0, 1, shape).astype(np.float32)} for _ in range(k)]
    keys = [jax.random.PRNGKey(i) for i in range(k)]
    solo = jax.jit(programs.guarded_step(config), donate_argnums=0)
    carries = programs.SoloSteps(config, mesh).place([jax.tree.map(jnp.copy, s) for s in states])

    def one():
        carries[0], m = solo(carries[0], batches[0], keys[0])
        jax.block_until_ready(m)

    def sequential():  # the baseline: a plain loop over the members' solo steps
        for i in range(k):
            carries[i], m = solo(carries[i], batches[i], keys[i])
        jax.block_until_ready(m)

    fns = {"solo": one, "sequential": sequential}
    for mode in modes:  # the trainer's own programs (programs.for_members)
        program = programs.for_members(config, mesh, k, mode)
        holder = [program.place([jax.tree.map(jnp.copy, s) for s in states])]
        args = (program.place_batch(batches), program.place_keys(keys))

        def run(program=program, holder=holder, args=args):
            holder[0], m = program.step(holder[0], *args)
            jax.block_until_ready(m)

        fns[f"vectorized_{mode}"] = run
    return interleaved_medians(fns, repeats)


def whole_sweep_seconds(k: int, steps_per_member: int) -> tuple[float, float]:
    """Wall time of a K-member lr/seed sweep of the conv VAE: in-process vs K processes."""
    root = tempfile.mkdtemp(prefix="genimg_sweep_bench_")
    spec = os.path.join(root, "spec.py")
    with open(spec, "w") as f:
        f.write(
            "import sys\n"
            f"sys.path.insert(0, {os.path.join(REPO, 'configs')!r})\n"
            "import vae_mnist\n"
            "from genimg_jax.sweep import axis, product\n"
            "def get_config(arg=None):\n"
            "    c = vae_mnist.get_config()\n"
            f"    c.train.steps = {steps_per_member}\n"
            "    c.train.log_every = c.train.checkpoint_every = c.eval.every = c.train.steps\n"
            "    c.parallel.num_devices = 1\n"
            "    return c\n"
            "def get_sweep(arg=None):\n"
            "    return product(axis('train.lr', [1e-3, 3e-3]), "
            f"axis('seed', list(range({k // 2}))))\n"
        )
    try:
        start = time.perf_counter()
        sweep_run.run(spec, os.path.join(root, "inprocess"))
        in_process = time.perf_counter() - start
        _, members = sweep.load(spec)
        start = time.perf_counter()
        for m in members:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "genimg_jax.cli.main",
                    "train",
                    "--config",
                    spec,
                    "--workdir",
                    os.path.join(root, "processes", m.name),
                    *sweep_run.override_flags(m.overrides),
                ],
                check=True,
                capture_output=True,
                env=dict(os.environ, XLA_FLAGS=""),
            )
        processes = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return in_process, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ks", default="8,16", help="member counts, e.g. 1,4,16")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a dry run in seconds")
    parser.add_argument("--no-processes", action="store_true", help="skip the whole-sweep runs")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args()
    repeats = 3 if args.quick or args.tiny else 7
    ks = [int(k) for k in args.ks.split(",")]
    auto = programs.resolve_mode("auto")
    print(f"backend={jax.default_backend()} devices={jax.device_count()} auto_mode={auto}")
    modes = ("sequential", "vmap", "unroll") + (() if args.quick or args.tiny else ("map",))
    names = [f"vectorized_{m}" for m in modes]
    print(
        f"{'model':8} {'K':>3} {'solo ms':>8} {'K seq ms':>9} "
        + " ".join(f"{m + ' ms':>20}" for m in modes)
    )
    worst, rows = 0.0, []
    for family in ("conv_vae", "mlp_vae"):
        config = model_config(family)
        if args.tiny:
            config.train.batch_size, config.model.width, config.model.hidden = 8, 8, 16
        for k in ks:
            t = step_times(config, k, repeats, modes)
            ratio = {n: t[n] / t["sequential"] for n in names}
            worst = max(worst, ratio[f"vectorized_{auto}"])
            cells = " ".join(f"{t[n]:11.1f} ({ratio[n]:4.2f}x)" for n in names)
            print(f"{family:8} {k:3d} {t['solo']:8.1f} {t['sequential']:9.1f} {cells}", flush=True)
            # K members in one program against one member's step: at most 2x for 16 members is
            # 8x the throughput of a loop (the GPU target of issue #25)
            rows.append(
                {
                    "model": family,
                    "k": k,
                    "ms": t,
                    "auto_over_solo": t[f"vectorized_{auto}"] / t["solo"],
                }
            )
    if not args.no_processes:
        k = 4 if args.quick else 8
        in_process, processes = whole_sweep_seconds(k, 20 if args.quick else 100)
        print(
            f"whole sweep, conv VAE, K={k}: in-process {in_process:.1f} s, "
            f"{k} genimg train processes {processes:.1f} s, ratio {in_process / processes:.2f}"
        )
    print(f"vectorized_over_sequential={worst:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            facts = {"backend": jax.default_backend(), "auto_mode": auto, "repeats": repeats}
            json.dump({"facts": facts, "rows": rows, "worst": worst}, f, indent=2)


if __name__ == "__main__":
    main()
