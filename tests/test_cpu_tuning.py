"""CPU tuning (cpu_tuning.py): `import genimg_jax` changes nothing in the process; the `genimg`
command (and `tune_cpu()`) sets the XLA:CPU flag unless the user chose their own value, with
effect on the convolutions XLA compiles, and keeps freed host memory in the process (glibc's
mallopt, and single-device programs on the calling thread): a donated training step whose
buffers glibc would otherwise map and unmap at every call stops paying page faults for them, so
does a program with a buffer over a thread heap's 64 MiB, and a user who tunes glibc's malloc or
JAX's dispatch keeps their own setting."""

import os
import subprocess
import sys

import jax
import numpy as np

from genimg_jax.runtime import cpu_tuning
from genimg_jax.runtime import setup as runtime_setup

TESTS = os.path.dirname(os.path.abspath(__file__))

# Minor page faults of each of 8 calls of the donated 32x32 conv VAE step at batch 128 on one
# device (benchmarks/steps.py's case: buffers of tens of MB), after 6 warm-up calls (in 3 fresh
# processes each here, glibc's default faulted ~27,000 times at every call; kept, the medians
# were 0-4 and no call over 1,000).
PROBE = f"""
import os, resource, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"
sys.path.insert(0, {TESTS!r})
import genimg_jax
genimg_jax.tune_cpu()
import jax, numpy as np
from conftest import compiled_state, load_config
from genimg_jax import families
config = load_config("vae_mnist", None)
config.data.image_size, config.train.batch_size = 32, 128
config.model.width, config.model.hidden, config.model.latent_dim = 32, 256, 16
lo, hi = families.of(config).value_range
images = np.random.default_rng(0).uniform(lo, hi, (128, 32, 32, 1)).astype(np.float32)
batch, key = {{"image": jax.device_put(images)}}, jax.random.PRNGKey(0)
s = compiled_state(config, key)
step = jax.jit(families.make_train_step(config), donate_argnums=0)
for call in range(14):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    s = jax.block_until_ready(step(s, batch, key)[0])
    if call >= 6:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

# Minor page faults of each of 10 calls of a program holding a 96 MiB intermediate (the 32x32
# DCGAN step at batch 256 holds 158 MB), after 10 warm-up calls. On the calling thread the heap
# still grows by the buffer at some calls (small allocations take part of the freed block): of
# 50 fresh processes here most stopped after the 3rd call, 4 faulted at 1 or 2 of the 10
# measured calls (the median counts), and none at more.
LARGE_BUFFER_PROBE = """
import os, resource
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"
import genimg_jax
genimg_jax.tune_cpu()
import jax, jax.numpy as jnp
@jax.jit
def f(x):  # the barrier keeps sin(x) a buffer of its own, not fused into the sum
    y = jax.lax.optimization_barrier(jnp.sin(x))
    return jnp.sum(y * y)
x = jnp.ones((24 * 2**20,), jnp.float32)
for call in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(f(x))
    if call >= 10:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# Every probe runs on 4 KiB pages whatever the host's transparent huge page setting (with THP
# "always" the 96 MiB would take ~50 faults, not 24,578).
SMALL_PAGES = "import ctypes; ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE\n"


def _faults_per_call(probe: str = PROBE, **env) -> float:
    """The median over the probe's calls (after warm-up), run in a fresh process with `env`."""
    result = subprocess.run(
        [sys.executable, "-c", SMALL_PAGES + probe],
        check=False,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return float(np.median([int(n) for n in result.stdout.split()]))


def test_a_users_malloc_tunables_win():
    assert not cpu_tuning.keep_freed_memory({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=65536"})
    assert cpu_tuning.keep_freed_memory({"GLIBC_TUNABLES": "glibc.rtld.nns=4"})  # not malloc's


def test_a_donated_step_stops_faulting_its_buffers_in_at_every_call():
    kept = _faults_per_call()
    glibc_default = _faults_per_call(GLIBC_TUNABLES="glibc.malloc.mmap_max=65536")
    # ~27,000 faults (4 KiB pages) per step with glibc's default on the benchmark machine; kept
    # in the process, none in most steps.
    assert glibc_default > 1000, glibc_default
    assert kept < glibc_default / 20, (kept, glibc_default)


def test_a_buffer_over_a_thread_heaps_limit_stops_faulting_in_at_every_call():
    """...because the program runs on the calling thread, unless the user chose JAX's dispatch
    thread in the environment."""
    kept = _faults_per_call(LARGE_BUFFER_PROBE)
    dispatch_thread = _faults_per_call(LARGE_BUFFER_PROBE, JAX_CPU_ENABLE_ASYNC_DISPATCH="true")
    # JAX's dispatch thread maps the 96 MiB anew at every call: 24,578 faults here; none on
    # the calling thread, whose heap keeps it
    assert dispatch_thread > 20_000, dispatch_thread
    assert kept < dispatch_thread / 20, (kept, dispatch_thread)


# Prints whether XLA:CPU hands a 32->64-channel convolution to YNNPACK (a `__ynn_fusion`).
CONV_PROBE = """
import genimg_jax
genimg_jax.tune_cpu()
import jax, jax.numpy as jnp
from jax import lax
x, w = jnp.ones((8, 16, 16, 32)), jnp.ones((4, 4, 32, 64))
conv = lambda x, w: lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
print("YNN" if "ynn" in jax.jit(conv).lower(x, w).compile().as_text() else "EIGEN")
"""


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_users_dispatch_choice_in_the_environment_is_applied_either_way():
    """JAX's option does not read JAX_CPU_ENABLE_ASYNC_DISPATCH: the runtime setup applies it."""
    option = "jax_cpu_enable_async_dispatch"
    try:
        jax.config.update(option, True)
        chosen = {cpu_tuning.ASYNC_DISPATCH_VAR: "false"}
        assert runtime_setup.run_programs_on_calling_thread(chosen)
        assert jax.config.read(option) is False
        chosen = {cpu_tuning.ASYNC_DISPATCH_VAR: "true"}
        assert not runtime_setup.run_programs_on_calling_thread(chosen)
        assert jax.config.read(option) is True
    finally:
        runtime_setup.run_programs_on_calling_thread(os.environ)  # the suite's own setting


def test_importing_the_package_changes_nothing_in_the_process():
    code = (
        "import os, genimg_jax, genimg_jax.training.loop, jax\n"
        "print(os.environ.get('XLA_FLAGS'), jax.config.read('jax_cpu_enable_async_dispatch'))"
    )
    done = _run(code, XLA_FLAGS="--xla_cpu_use_thunk_runtime=true")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["--xla_cpu_use_thunk_runtime=true", "True"]


def test_the_xla_flag_is_added_and_other_flags_kept():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert runtime_setup.apply_xla_flag(environ)
    assert environ["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        cpu_tuning.CPU_CONVOLUTIONS_ON_EIGEN,
    ]
    assert runtime_setup.apply_xla_flag(environ)  # idempotent: not added twice
    assert environ["XLA_FLAGS"].count(cpu_tuning.YNN_FUSION_FLAG) == 1
    empty = {}
    runtime_setup.apply_xla_flag(empty)
    assert empty["XLA_FLAGS"] == cpu_tuning.CPU_CONVOLUTIONS_ON_EIGEN


def test_a_users_own_xla_flag_value_wins():
    mine = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    environ = {"XLA_FLAGS": mine}
    assert not runtime_setup.apply_xla_flag(environ)
    assert environ["XLA_FLAGS"] == mine


def test_convolutions_compile_for_eigen_when_tuned_and_for_ynnpack_when_the_user_says():
    default = _run(CONV_PROBE, XLA_FLAGS="")
    assert default.returncode == 0, default.stderr[-2000:]
    assert default.stdout.split()[-1] == "EIGEN"
    mine = _run(
        CONV_PROBE, XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    )
    assert mine.returncode == 0, mine.stderr[-2000:]
    assert mine.stdout.split()[-1] == "YNN"  # XLA's own default, back on the user's word


def test_the_backend_is_known_without_starting_it():
    assert cpu_tuning.backend_is_cpu({"JAX_PLATFORMS": "cpu"})
    assert not cpu_tuning.backend_is_cpu({"JAX_PLATFORMS": "cuda,cpu"})
    assert cpu_tuning.backend_is_cpu({})  # this machine: no accelerator plugin installed
    assert runtime_setup.tune_if_cpu({"JAX_PLATFORMS": "tpu"}) == {}
