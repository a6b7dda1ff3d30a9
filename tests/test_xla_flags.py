"""The XLA:CPU flag genimg sets on import: added unless the user chose their own value, in
effect for the convolutions XLA compiles, and a warning when JAX started first."""

import os
import subprocess
import sys

from genimg_jax import xla_flags

# Prints whether XLA:CPU hands a 32->64-channel convolution to YNNPACK (a `__ynn_fusion`).
PROBE = """
import genimg_jax, jax, jax.numpy as jnp
from jax import lax
x, w = jnp.ones((8, 16, 16, 32)), jnp.ones((4, 4, 32, 64))
conv = lambda x, w: lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
print("YNN" if "ynn" in jax.jit(conv).lower(x, w).compile().as_text() else "EIGEN")
"""


def _run(code: str, xla_flags_value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS=xla_flags_value)
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_adds_the_flag_and_keeps_other_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert xla_flags.apply_defaults(environ)
    assert environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        xla_flags.CPU_CONVOLUTIONS_ON_EIGEN,
    ]
    assert xla_flags.apply_defaults(environ)  # idempotent: not added twice
    assert environ["XLA_FLAGS"].count(xla_flags.YNN_FUSION_FLAG) == 1
    empty = {}
    xla_flags.apply_defaults(empty)
    assert empty["XLA_FLAGS"] == xla_flags.CPU_CONVOLUTIONS_ON_EIGEN


def test_a_users_own_value_wins():
    mine = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    environ = {"XLA_FLAGS": mine}
    assert not xla_flags.apply_defaults(environ)
    assert environ["XLA_FLAGS"] == mine


def test_convolutions_compile_for_eigen_by_default_and_for_ynnpack_when_the_user_says():
    default = _run(PROBE, "")
    assert default.returncode == 0, default.stderr[-2000:]
    assert default.stdout.split()[-1] == "EIGEN"
    mine = _run(PROBE, "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution")
    assert mine.returncode == 0, mine.stderr[-2000:]
    assert mine.stdout.split()[-1] == "YNN"  # XLA's own default, back on the user's word


def test_warns_when_jax_started_before_the_import():
    late = _run("import jax; jax.devices(); import genimg_jax", "")
    assert late.returncode == 0, late.stderr[-2000:]
    assert "started its backends before `import genimg_jax`" in late.stderr
    early = _run("import genimg_jax, jax; jax.devices()", "")
    assert "started its backends" not in early.stderr
