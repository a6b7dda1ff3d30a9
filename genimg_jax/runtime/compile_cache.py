"""JAX's persistent compilation cache, as genimg runs use it: compiled programs are kept on disk,
so a second run of a config, a resume, or the next member of a sweep in another process loads
its training step instead of compiling it again.

`compile_cache_dir` (a config field) picks the directory, which the runtime setup applies
(`runtime.setup.use_compile_cache`: the `genimg` command, or `genimg_jax.setup_runtime(config)`):
- "auto" (default): the directory JAX is already configured with (`JAX_COMPILATION_CACHE_DIR`
  or JAX's option `jax_compilation_cache_dir` set by the user), else `~/.cache/genimg_jax/xla`
  (`$XDG_CACHE_HOME/genimg_jax/xla` where that is set);
- a path: that directory;
- "": no persistent cache.

JAX keys every entry on the program itself (its StableHLO without source locations, so every
shape, dtype and static field is in it), the jaxlib version, the backend and its version,
`XLA_FLAGS`, the compile options and the devices: a changed shape, flag or version is a new
key and compiles anew, and a hit runs the very executable the miss compiled
(tests/test_compile_cache.py checks both).

JAX writes only programs that took at least `jax_persistent_cache_min_compile_time_secs` to
compile, 1 s by default; genimg lowers that to 0 unless you set it (the environment variable
`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`, or JAX's option of that name): the main job's
initialisation, sampling and scoring programs compile in under a second each, and caching them
too took a second run from 6.5-6.7 s to 2.9-3.1 s between process start and its first step. The
directory grows by about 1 MB per distinct config and can be deleted at any time. Anyone who can
write to it can run code in your runs: keep it private.
"""

import os

import jax
import jax.monitoring

AUTO = "auto"
MIN_COMPILE_TIME_VAR = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
JAX_MIN_COMPILE_TIME = 1.0  # JAX's default of jax_persistent_cache_min_compile_time_secs
HIT_EVENT = "/jax/compilation_cache/cache_hits"

_hits = 0
_listening = False
_jax_own: list[str | None] = []  # JAX's setting before genimg first changed it (env or user)


def default_dir() -> str:
    """`$XDG_CACHE_HOME/genimg_jax/xla`, else `~/.cache/genimg_jax/xla`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "genimg_jax", "xla")


def resolve(setting: str) -> str | None:
    """The directory a `compile_cache_dir` setting names (None: no persistent cache)."""
    if not setting:
        return None
    if setting == AUTO:
        return previous_setting() or default_dir()
    return os.path.abspath(os.path.expanduser(setting))


def previous_setting() -> str | None:
    """JAX's own cache directory before genimg first changed it (the environment's or the
    user's), remembered by `runtime.setup.use_compile_cache`."""
    return _jax_own[0] if _jax_own else jax.config.jax_compilation_cache_dir


def remember_jax_setting() -> None:
    """Notes JAX's own cache directory, once, before genimg changes it."""
    if not _jax_own:
        _jax_own.append(jax.config.jax_compilation_cache_dir)


def count_hits() -> None:
    """Counts this process's loads from the persistent cache from now on (`hits`)."""
    global _listening
    if not _listening:  # listeners cannot be removed: one per process
        jax.monitoring.register_event_listener(_count_hit)
        _listening = True


def hits() -> int:
    """Programs this process has loaded from the persistent cache since `count_hits`."""
    return _hits


def _count_hit(event: str, **kwargs) -> None:
    global _hits
    if event == HIT_EVENT:
        _hits += 1
