"""Shared fixtures: one TFDS data dir for the session (bundled data sets prepared once), and
small configs."""

import functools
import json
import os
import shutil
import tempfile

import pytest

# Eight host-platform CPU devices, so multi-device runs are real (set before JAX starts).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
# XLA:CPU aborts the process when a collective's threads do not all arrive within its timeout
# (a default of tens of seconds); 8 device threads on 2 loaded cores can take longer.
if "collective_call_terminate_timeout" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_cpu_collective_call_terminate_timeout_seconds=900"
# What `genimg train` adds for `deterministic=True` before JAX starts (parallel.py), set here
# before any test starts JAX: the suite's programs then compile with the options of the CLI
# processes it spawns, and share their compilation-cache entries (XLA reads the flags into the
# compile options when the backend starts, whatever is added to XLA_FLAGS later).
if "xla_gpu_deterministic_ops" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_gpu_deterministic_ops=true"
# On CPU the suite's programs are compiled with LLVM's optimisations off and XLA:CPU's older
# fusion code emitters (not the MLIR fusion emitters): most of the suite's time is compiling tiny
# programs that then run a dozen steps (XLA's compile time of five quick configs' steps: 0.52x the
# default's at level 0, 0.30x with the older emitters too; benchmarks/compile_flags.py). Each
# program's machine code is generated as one module, not split for threads that the two busy
# workers leave no core for (0.90x again).
# XLA's graph passes (fusion, layout) still run, so the programs are the CLI's up to code
# generation; the CLI processes the tests spawn inherit the flags, so in-process and subprocess
# runs still compare bitwise. Flags given in XLA_FLAGS win (`XLA_FLAGS=--xla_backend_optimization_
# level=3 make test`); the benchmarks and the `genimg` command never set them.
from genimg_jax.runtime import cpu_tuning  # imports no JAX

if cpu_tuning.backend_is_cpu():
    for flag in (
        "xla_backend_optimization_level=0",
        "xla_cpu_use_fusion_emitters=false",
        "xla_cpu_parallel_codegen_split_count=1",
    ):
        if flag.split("=")[0] not in os.environ["XLA_FLAGS"]:
            os.environ["XLA_FLAGS"] += " --" + flag
# Everything the tests prepare goes to a private data dir, never the user's ~/tensorflow_datasets;
# one the session made is removed when it ends.
OWN_DATA_DIR = "TFDS_DATA_DIR" not in os.environ
if OWN_DATA_DIR:
    os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="genimg_tfds_")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent compilation cache for the suite run (its subprocesses too), so that tests that
# train the same config compile its programs once: a private directory, removed at the end, so
# each run starts cold like CI. JAX_COMPILATION_CACHE_DIR set beforehand is used and kept (a
# warm suite). Programs are cached however quickly they compiled.
OWN_CACHE_DIR = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if OWN_CACHE_DIR:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="genimg_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# The CPU settings the `genimg` command applies before JAX starts (runtime/setup.py), so that the
# in-process tests compile and run the programs its processes do.
# (imported here: importing it imports JAX, which reads the environment set above)
from genimg_jax.runtime import setup as runtime_setup

runtime_setup.tune_if_cpu()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = "quick"):
    """configs/<name>.py's get_config(arg)."""
    from genimg_jax import config as config_lib  # here: JAX starts after XLA_FLAGS are set

    return config_lib.from_file(os.path.join(REPO, "configs", f"{name}.py"), arg)


def compiled_state(config, key=None):
    """`families.create_state(config, key)` (key 0 by default) as one compiled program: op by op,
    every layer's initialisers compile one at a time (~20 ms of CPU each)."""
    import jax

    from genimg_jax import families

    key = jax.random.key(0) if key is None else key
    return jax.jit(functools.partial(families.create_state, config))(key)


def tree_equal(a, b) -> bool:
    """Whether two pytrees of one structure hold bitwise equal arrays."""
    import jax
    import numpy as np

    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


def tree_all_differ(a, b) -> bool:
    """Whether every array of pytree `a` differs from its counterpart in `b`."""
    import jax
    import numpy as np

    return all(jax.tree.leaves(jax.tree.map(lambda x, y: not np.array_equal(x, y), a, b)))


def resume_copy(workdir, step: int, into, config):
    """A run cut off after its save of `step`: that checkpoint of `workdir`'s alone, copied into
    the fresh workdir `into`, where `config` then trains to its end. Returns (final state, the
    steps that run logged)."""
    from genimg_jax.training import loop as trainer

    shutil.copytree(
        os.path.join(workdir, "checkpoints", str(step)),
        os.path.join(into, "checkpoints", str(step)),
    )
    state = trainer.train_and_evaluate(config, str(into))
    with open(os.path.join(into, "metrics.jsonl")) as f:
        return state, [json.loads(line)["step"] for line in f]


def pytest_sessionfinish(session, exitstatus):
    if OWN_DATA_DIR:
        shutil.rmtree(os.environ["TFDS_DATA_DIR"], ignore_errors=True)
    if OWN_CACHE_DIR:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> str:
    return os.environ["TFDS_DATA_DIR"]
