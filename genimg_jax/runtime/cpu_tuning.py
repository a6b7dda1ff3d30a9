"""CPU tuning: three settings that make genimg's steps faster on XLA:CPU, applied by the
runtime setup (`runtime.setup.tune_cpu`: the `genimg` command before JAX starts, when the run will
be on CPU, `backend_is_cpu`; or a library user's explicit `genimg_jax.setup_runtime(config)` or
`genimg_jax.tune_cpu()` before their first JAX computation). `import genimg_jax` and the
library's calls change nothing in the process. Each setting yields to the user's own choice of it, and none
changes what a run computes on GPU or TPU.

1. The XLA:CPU flag (XLA_FLAGS): convolutions on Eigen.
2. glibc's malloc keeps freed memory (mallopt).
3. Single-device CPU programs run on the calling thread (`jax_cpu_enable_async_dispatch`).

## 1. The XLA:CPU flag
XLA:CPU runs convolutions on Eigen instead of YNNPACK. Measured on the
2-core benchmark machine (benchmarks/README.md), every training step got faster with it: the
32x32 DCGAN by 7% (batch 64) and 28% (batch 256), the conv VAE by 21%, the shipped 28x28
configs by 15-26%. Per convolution, Eigen ran weight gradients 1.4-2.1x faster and most of the
others up to 1.6x faster; two ran slower, a 32->64-channel forward conv at batch 128 (1.2x)
and the conv of a 1-channel image (2.3x, under a millisecond). Dots, reductions and elementwise
fusions stay on YNNPACK. GPU and TPU ignore `xla_cpu_*` flags.

The CLI, the tests and the benchmarks apply it, so they compile the same programs (same numbers
for the same config and seed); a user's script does with `tune_cpu()`. A user who writes any
`--xla_cpu_experimental_ynn_fusion_type=...` into XLA_FLAGS keeps their own value, e.g.
`+individual_convolution` for XLA's default. Flags are read once, when JAX starts its first
backend: after that the flag cannot apply.

## 2. Host memory
The process keeps the memory it frees for its next allocations instead of handing it back to
the OS and faulting it in again.

XLA:CPU allocates a compiled program's buffers with malloc at every call and frees them at the
end. glibc serves a large allocation with a fresh `mmap` and unmaps it at `free`, so every
training step pays for the kernel to map and zero that memory again: the donated 32x32 conv VAE
step at batch 128 took 9,600 minor page faults (39 MB) per step and ran 25% slower for it on the
2-core benchmark machine (benchmarks/README.md); which steps cross glibc's thresholds depends
on their buffer sizes, not on the model family. On glibc, `tune_cpu` sets, with `mallopt`:
- M_MMAP_MAX = 0: no single allocation gets its own mapping; all come from the heap;
- M_TRIM_THRESHOLD = 2 GiB - 1: freed memory at the top of a heap stays with the process.
glibc keeps a heap per thread (up to 8 per core), and XLA runs programs on a pool of threads:
a step whose buffers come from a thread's heap that has not held them before still faults
them in (rarely with one device; with 8 host devices on 2 cores, about a third of glibc's
default faults remain). One heap for all threads (M_ARENA_MAX = 1) removed those too, but made
the steps 10-20% slower here (lock contention), so the per-thread heaps stay.
The process's resident memory then stays near its peak instead of shrinking between steps.
Numbers do not change, only where the bytes live.

## 3. Programs on the calling thread
One more setting makes that hold for large programs: JAX runs a single-device CPU program on
the calling thread instead of a dispatch thread (`jax_cpu_enable_async_dispatch=False`). glibc
serves a thread's allocations from that thread's heap, and the heaps of threads other than the
main one hold at most 64 MiB per allocation: the 158 MB temporary buffer of the 32x32 DCGAN step
at batch 256 was mapped and faulted in anew at every call on JAX's dispatch thread (40,000
faults and ~70 ms of kernel time per step), and comes from the main thread's heap when the
program runs there (368-393 ms -> 331-339 ms per step in alternated fresh processes on the
2-core benchmark machine; the smaller steps did not change). The calling thread waits for
the program, with the GIL released (a data-loading thread keeps running); programs over several
devices keep JAX's asynchronous dispatch. `JAX_CPU_ENABLE_ASYNC_DISPATCH=true` in the
environment keeps JAX's default (`=false` chooses the calling thread too; JAX's option itself
does not read the environment, the runtime setup applies it).

A user who sets any glibc malloc tunable in GLIBC_TUNABLES (e.g.
`GLIBC_TUNABLES=glibc.malloc.mmap_max=65536`, glibc's default) keeps glibc's own behaviour.
Elsewhere (macOS, musl, Windows) nothing is changed.
"""

import ctypes
import importlib.metadata
import os
from collections.abc import Mapping

YNN_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
CPU_CONVOLUTIONS_ON_EIGEN = f"--{YNN_FUSION_FLAG}=-individual_convolution"
M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_MAX = -4
KEEP_UP_TO = 2**31 - 1  # bytes; mallopt takes an int
ASYNC_DISPATCH_VAR = "JAX_CPU_ENABLE_ASYNC_DISPATCH"  # "true" or "false": the user's choice
# Distributions that give JAX an accelerator backend: where one is installed, JAX picks it.
ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm7-plugin", "libtpu")


def backend_is_cpu(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether JAX will run on CPU, decided without starting a backend: JAX_PLATFORMS names cpu
    first, or it is unset and no accelerator plugin is installed."""
    platforms = environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    for name in ACCELERATOR_PLUGINS:
        try:
            importlib.metadata.distribution(name)
            return False
        except importlib.metadata.PackageNotFoundError:
            pass
    return True


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Sets glibc's malloc to serve every allocation from a heap it does not trim (unless the
    user tuned glibc's malloc in GLIBC_TUNABLES). Returns whether it is in effect."""
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return False  # the user's choice wins
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError, TypeError):  # no mallopt: not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
