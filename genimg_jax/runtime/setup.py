"""The process-wide settings a genimg process runs with: the one place that writes XLA_FLAGS,
JAX's configuration and the environment. The `genimg` command (and a sweep's submitit job)
calls `setup_runtime(config)` after reading its config and before JAX starts a backend; library
calls (`genimg_jax.train`, ...) change none of these, and a library user who wants them calls
`genimg_jax.setup_runtime(config)` (or only `genimg_jax.tune_cpu()`) first.

- CPU tuning where the run will be on CPU (`runtime.cpu_tuning`: convolutions on Eigen,
  glibc's malloc keeping freed memory, single-device programs on the calling thread);
- XLA's deterministic GPU ops when `config.deterministic` (a no-op on CPU);
- the persistent compilation cache at `config.compile_cache_dir` (`runtime.compile_cache`);
- joining a multi-process run (`parallel.initialize_distributed`).

Each yields to the user's own choice where they made one (a flag already in XLA_FLAGS, JAX's
dispatch or cache settings in the environment). XLA reads its flags when JAX starts its first
backend: settings applied after that are recorded in the run record but cannot take effect.
"""

import os
from collections.abc import MutableMapping

import jax
import ml_collections
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

from genimg_jax.runtime import compile_cache, cpu_tuning, parallel

DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def setup_runtime(config: ml_collections.ConfigDict) -> dict:
    """Applies the module doc's settings for `config` to this process; returns what is in
    effect ({"cpu_tuning": {...}, "deterministic": bool, "compile_cache_dir": str | None})."""
    tuned = tune_if_cpu()
    deterministic = set_deterministic_gpu_ops(config.deterministic)
    directory = use_compile_cache(config.compile_cache_dir)
    parallel.initialize_distributed(config.parallel)
    return {"cpu_tuning": tuned, "deterministic": deterministic, "compile_cache_dir": directory}


def tune_cpu(environ: MutableMapping[str, str] = os.environ) -> dict[str, bool]:
    """Applies the three settings of `runtime.cpu_tuning` to this process, each unless the user
    chose their own; returns which are in effect. Call it before the first JAX computation (JAX
    reads XLA_FLAGS and the dispatch setting when it starts its CPU backend)."""
    kept = cpu_tuning.keep_freed_memory(environ)
    return {
        "xla_cpu_flag": apply_xla_flag(environ),
        "keep_freed_memory": kept,
        "calling_thread": kept and run_programs_on_calling_thread(environ),
    }


def tune_if_cpu(environ: MutableMapping[str, str] = os.environ) -> dict[str, bool]:
    """`tune_cpu` where the run will be on CPU (`cpu_tuning.backend_is_cpu`); what the `genimg`
    command, the tests and the benchmarks do first."""
    return tune_cpu(environ) if cpu_tuning.backend_is_cpu(environ) else {}


def apply_xla_flag(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Adds the XLA:CPU flag to `environ["XLA_FLAGS"]` unless the user set their own value of
    it. Returns whether the flag is in XLA_FLAGS."""
    flags = environ.get("XLA_FLAGS", "")
    if cpu_tuning.YNN_FUSION_FLAG in flags:  # the user's choice wins (and is theirs to reproduce)
        return cpu_tuning.CPU_CONVOLUTIONS_ON_EIGEN in flags.split()
    environ["XLA_FLAGS"] = f"{flags} {cpu_tuning.CPU_CONVOLUTIONS_ON_EIGEN}".strip()
    return True


def run_programs_on_calling_thread(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Makes JAX run single-device CPU programs on the calling thread, so that their buffers
    come from its heap, unless the user chose in the environment: JAX_CPU_ENABLE_ASYNC_DISPATCH
    true or false (JAX's option does not read the environment; this applies it). Returns
    whether programs run on the calling thread."""
    chosen = environ.get(cpu_tuning.ASYNC_DISPATCH_VAR, "false").strip().lower()
    asynchronous = chosen not in ("0", "false", "no", "off")
    jax.config.update("jax_cpu_enable_async_dispatch", asynchronous)
    return not asynchronous


def set_deterministic_gpu_ops(
    enabled: bool, environ: MutableMapping[str, str] = os.environ
) -> bool:
    """Asks XLA for deterministic GPU reductions and convolutions (no effect on CPU, where every
    op already is). Must run before JAX initialises its backends; a flag the user set wins.
    Returns whether the flag is in XLA_FLAGS."""
    flags = environ.get("XLA_FLAGS", "")
    if enabled and "xla_gpu_deterministic_ops" not in flags:
        environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()
    return DETERMINISTIC_FLAG in environ.get("XLA_FLAGS", "").split()


def use_compile_cache(setting: str) -> str | None:
    """Makes this process's compilations read and write the cache that `setting` names (see
    `runtime.compile_cache`); returns its directory, or None where the setting turns it off."""
    directory = compile_cache.resolve(setting)
    compile_cache.remember_jax_setting()
    if jax.config.jax_compilation_cache_dir != directory:
        _jax_cache.reset_cache()  # JAX opens its cache once; reopen it at the new place
        jax.config.update("jax_compilation_cache_dir", directory)
    jax_default = (
        jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.JAX_MIN_COMPILE_TIME
    )
    if directory and jax_default and compile_cache.MIN_COMPILE_TIME_VAR not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # cache every program
    compile_cache.count_hits()
    return directory
