"""The XLA flags genimg_jax sets for its users, before JAX initialises a backend.

One flag, CPU only: XLA:CPU runs convolutions on Eigen instead of YNNPACK. Measured on the
2-core benchmark machine (benchmarks/README.md), every training step got faster with it: the
32x32 DCGAN by 7% (batch 64) and 28% (batch 256), the conv VAE by 21%, the shipped 28x28
configs by 15-26%. Per convolution, Eigen ran weight gradients 1.4-2.1x faster and most of the
others up to 1.6x faster; two ran slower, a 32->64-channel forward conv at batch 128 (1.2x)
and the conv of a 1-channel image (2.3x, under a millisecond). Dots, reductions and elementwise
fusions stay on YNNPACK. GPU and TPU ignore `xla_cpu_*` flags.

`import genimg_jax` applies it, so the CLI, the tests, the benchmarks and a user's own script
all compile the same programs (same numbers for the same config and seed). A user who writes
any `--xla_cpu_experimental_ynn_fusion_type=...` into XLA_FLAGS keeps their own value, e.g.
`+individual_convolution` for XLA's default. Flags are read once, when JAX starts its first
backend: if that happened before `import genimg_jax`, the flag cannot apply, and a warning
says so.
"""

import logging
import os
from collections.abc import MutableMapping

YNN_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
CPU_CONVOLUTIONS_ON_EIGEN = f"--{YNN_FUSION_FLAG}=-individual_convolution"


def backends_started() -> bool:
    """Whether JAX has already initialised a backend (then XLA_FLAGS are read and fixed)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # no jax importable: nothing can have started
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started and started())


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Adds genimg's XLA:CPU flag to `environ["XLA_FLAGS"]` unless the user set their own
    value of it. Returns whether the flag is in effect for this process's backends."""
    flags = environ.get("XLA_FLAGS", "")
    if YNN_FUSION_FLAG in flags:  # the user's choice wins (and is theirs to reproduce)
        return CPU_CONVOLUTIONS_ON_EIGEN in flags.split()
    environ["XLA_FLAGS"] = f"{flags} {CPU_CONVOLUTIONS_ON_EIGEN}".strip()
    if environ is os.environ and backends_started():
        logging.getLogger("genimg_jax").warning(
            "JAX started its backends before `import genimg_jax`, so genimg's XLA:CPU flag "
            "%s does not apply in this process (CPU steps run slower, and numbers differ in "
            "the last bits from runs that have it). Import genimg_jax before running JAX "
            "code, or put the flag in XLA_FLAGS yourself.",
            CPU_CONVOLUTIONS_ON_EIGEN,
        )
        return False
    return True
