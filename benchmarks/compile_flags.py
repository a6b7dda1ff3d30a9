"""XLA:CPU compile time of the shipped quick configs' training steps under the suite's flags
(tests/conftest.py) against the default ones: each flag set compiles the same five steps cold in
a fresh process (no persistent cache), the sets alternating over `--rounds`; printed as XLA's
backend compile seconds and their ratio to the first set's in the same round.

  .venv/bin/python benchmarks/compile_flags.py --rounds 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = ("dcgan_mnist", "vqgan_mnist", "stylegan2_mnist", "vae_mnist", "kl_autoencoder_mnist")
SETS = {
    "default": "",
    "level 0": "--xla_backend_optimization_level=0",
    "level 0, older emitters": (
        "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    ),
    "level 0, older emitters, one codegen module (the suite's)": (
        "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
        "--xla_cpu_parallel_codegen_split_count=1"
    ),
}
BACKEND = "/jax/core/compile/backend_compile_duration"


def compile_steps() -> dict:
    """Compiles each quick config's step once (this process) and returns the seconds."""
    import jax
    import jax.numpy as jnp

    from genimg_jax import families
    from genimg_jax.config import from_file

    backend = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **_: backend.append(secs) if event == BACKEND else None
    )
    start = time.perf_counter()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in CONFIGS:
        config = from_file(os.path.join(repo, "configs", f"{name}.py"), "quick")
        if "perceptual" in config.model:
            config.model.perceptual = "none"  # the step alone, no feature net to train
        config.parallel.num_devices = 1
        family = families.of(config)
        state = family.create_state(config, jax.random.key(0))
        shape = (config.train.batch_size, config.data.image_size, config.data.image_size)
        batch = {
            "image": jnp.zeros((*shape, config.data.channels)),
            "label": jnp.zeros(shape[:1], jnp.int32),
        }
        step = jax.jit(family.make_train_step(config, None))
        step.lower(state, batch, jax.random.key(1)).compile()
    return {"backend": sum(backend), "total": time.perf_counter() - start}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(compile_steps()))
        return 0
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_PLATFORMS"] = "cpu"
    seconds = {name: [] for name in SETS}
    for _ in range(args.rounds):
        for name, flags in SETS.items():
            done = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env | {"XLA_FLAGS": flags},
                capture_output=True,
                text=True,
                check=True,
            )
            seconds[name].append(json.loads(done.stdout.splitlines()[-1])["backend"])
    first = seconds[next(iter(SETS))]
    print("| flags | XLA backend compile (s), median | ratio to default (median of rounds) |")
    print("|---|---|---|")
    for name, values in seconds.items():
        ratio = statistics.median(v / f for v, f in zip(values, first, strict=True))
        print(f"| {name} | {statistics.median(values):.1f} | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
