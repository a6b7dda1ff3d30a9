"""Training-step time of genimg_jax vs PyTorch (eager and torch.compile) on the same models.

Run: `.venv/bin/python benchmarks/steps.py [--quick] [--no-compile]` (needs the benchmark-only
extra: `.venv/bin/pip install torch==2.13.0`, the CPU wheel).

Ours is `jax.jit(genimg_jax.families.make_train_step(config), donate_argnums=0)`, compiled ahead
of time, warm, timed to `block_until_ready`; PyTorch's twins and steps are in
`torch_reference.py` (same layers and parameter counts, checked here). Each repeat times one
step of every implementation of every model, and one large float32 matmul (`jnp.dot`, the
achievable peak in this process), interleaved, alternating which goes first; the table shows
medians of times, and medians of the per-repeat ratios (each between steps timed within a
second or so of each other, which other processes' load changes less). The last line is
`worst_ratio=X`: the largest ours / PyTorch-eager ratio over the rows.

PyTorch's OpenMP threads busy-wait by default; when other processes share the cores that makes
its eager step ~10x slower (measured here: 2.0 s vs 0.2 s per DCGAN step with two other busy
processes on 2 cores). So this script sets `OMP_WAIT_POLICY=PASSIVE` unless you set it yourself;
PyTorch's step was no slower with it than with libgomp's default, and ACTIVE, 2-3% faster for
PyTorch alone, makes its threads spin through our steps (benchmarks/README.md).
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime

import jax
import jax.numpy as jnp
import numpy as np
import torch

try:
    import genimg_jax  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: import from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg_jax.runtime import setup as runtime_setup

runtime_setup.tune_if_cpu()  # what the `genimg` command applies, before JAX starts

import torch_reference as ref

from genimg_jax import families
from genimg_jax.runtime import parallel


@dataclass
class Case:
    """One benchmarked model: a shipped config with overrides."""

    name: str
    config: str  # configs/<config>.py
    batch: int
    image_size: int
    overrides: dict = field(default_factory=dict)  # model.* fields
    extra: bool = False  # the 28x28 default-config rows
    channels: int = 0  # 0: the config's


CASES = [
    Case("dcgan 32x32x1 ngf=ndf=64", "dcgan_mnist", 64, 32, {"g_width": 64, "d_width": 64}),
    Case("dcgan 32x32x1 ngf=ndf=64", "dcgan_mnist", 256, 32, {"g_width": 64, "d_width": 64}),
    Case("conv_vae 32x32x1 w32 h256 z16", "vae_mnist", 128, 32, {"width": 32, "hidden": 256}),
    Case("sngan resnet 32x32x3 w64", "sngan_cifar10", 64, 32, {"g_width": 64, "d_width": 64}),
    Case("dcgan_mnist default 28x28", "dcgan_mnist", 64, 28, extra=True),
    Case("vae_mnist default 28x28", "vae_mnist", 128, 28, extra=True),
]


# `--device`: the sizes people train on an accelerator (benchmarks/device_check.sh)
DEVICE_CASES = [
    Case(
        "dcgan 64x64x3 ngf=ndf=64",
        "dcgan_mnist",
        128,
        64,
        {"g_width": 64, "d_width": 64},
        channels=3,
    ),
    Case("sngan resnet 32x32x3 w128", "sngan_cifar10", 256, 32, {"g_width": 128, "d_width": 128}),
    Case(
        "conv_vae 64x64x3 w32 h256 z16",
        "vae_mnist",
        256,
        64,
        {"width": 32, "hidden": 256},
        channels=3,
    ),
]
# `--tiny`: the same code paths in seconds (the device check's dry run on a CPU)
TINY_CASES = [
    Case("dcgan 32x32x1 ngf=ndf=8", "dcgan_mnist", 8, 32, {"g_width": 8, "d_width": 8}),
    Case("sngan resnet 32x32x3 w8", "sngan_cifar10", 8, 32, {"g_width": 8, "d_width": 8}),
    Case("conv_vae 32x32x1 w8 h16 z16", "vae_mnist", 8, 32, {"width": 8, "hidden": 16}),
]


def case_config(case: Case, dtype: str = "float32"):
    """The case's config on one device, computing in `dtype`."""
    config = ref.load_config(case.config)
    config.train.compute_dtype = dtype
    config.data.channels = case.channels or config.data.channels
    config.data.image_size = case.image_size
    config.train.batch_size = case.batch
    config.parallel.num_devices = 1
    for key, value in case.overrides.items():
        config.model[key] = value
    if "d_steps" in config.train:  # GANs: one D and one G update, the PyTorch twins' step,
        config.train.d_steps = 1  # unconditional as the twins (the main job's G and D less
        config.model.num_classes = 0  # their class embeddings)
    if case.config == "vae_mnist":
        config.model.latent_dim = 16
    return config


def flops_of(compiled) -> float:
    """FLOPs of one call according to XLA's cost analysis (0 if unavailable)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


class Ours:
    """Our jitted step, compiled ahead of time, threading its donated state."""

    def __init__(self, config):
        mesh = parallel.make_mesh(1)
        self.state = families.initial_state(config, mesh)
        lo, hi = families.of(config).value_range
        size = config.data.image_size
        shape = (config.train.batch_size, size, size, config.data.channels)
        images = np.random.default_rng(0).uniform(lo, hi, shape).astype(np.float32)
        self.batch = {"image": jax.device_put(images)}
        self.key = jax.random.PRNGKey(0)
        jitted = jax.jit(families.make_train_step(config), donate_argnums=0)
        start = time.perf_counter()
        self.step = jitted.lower(self.state, self.batch, self.key).compile()
        self.compile_s = time.perf_counter() - start
        self.flops = flops_of(self.step)

    def __call__(self) -> None:
        self.state, metrics = self.step(self.state, self.batch, self.key)
        jax.block_until_ready((self.state, metrics))


class Torch:
    """A PyTorch step on a fixed batch (eager, or torch.compile'd)."""

    def __init__(self, config, compile: bool):
        self.step, self.counts = ref.build_step(config, compile=compile, device=TORCH_DEVICE)
        ref.check_param_counts(config, self.counts)
        lo, hi = families.of(config).value_range
        size, b = config.data.image_size, config.train.batch_size
        x = torch.rand(b, config.data.channels, size, size) * (hi - lo) + lo
        self.x = x.to(TORCH_DEVICE)
        self.compile_s = float("nan")
        if compile:  # the first calls trace and compile (G/D in both requires_grad modes)
            start = time.perf_counter()
            for _ in range(3):
                self()
            self.compile_s = time.perf_counter() - start

    def __call__(self) -> None:
        self.step(self.x)
        if TORCH_DEVICE == "cuda":
            torch.cuda.synchronize()


# PyTorch runs on the GPU where JAX does (same machine, same chip), else on the CPU.
TORCH_DEVICE = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


class Matmul:
    """A float32 [n, n] @ [n, n] with jnp.dot: the peak our backend reaches in this run."""

    def __init__(self, n: int):
        key = jax.random.PRNGKey(1)
        self.a = jax.random.normal(key, (n, n), jnp.float32)
        self.b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32)
        self.dot = jax.jit(jnp.dot).lower(self.a, self.b).compile()
        self.flops = 2.0 * n**3

    def __call__(self) -> None:
        self.dot(self.a, self.b).block_until_ready()


def na(value: float, fmt: str) -> str:
    """`value` formatted, or "n/a" where it was not measured (NaN)."""
    return format(value, fmt) if np.isfinite(value) else "n/a"


def time_ms(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under 5 minutes)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-extra", action="store_true", help="skip the 28x28 default rows")
    parser.add_argument("--device", action="store_true", help="accelerator sizes (DEVICE_CASES)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a dry run in seconds")
    parser.add_argument("--dtypes", default="float32", help="compute dtypes, e.g. float32,bfloat16")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args()
    repeats, warmup = (7, 2) if args.quick or args.tiny else (25, 3)
    matmul_n = 256 if args.tiny else 2048 if args.quick else 4096
    if args.tiny:
        cases = TINY_CASES
    elif args.device:
        cases = DEVICE_CASES
    else:
        cases = [c for c in CASES if not (c.extra and args.no_extra)]
    dtypes = args.dtypes.split(",")
    print(
        f"{datetime.date.today()} {platform.machine()} {os.cpu_count()} cores, "
        f"jax {jax.__version__} ({jax.default_backend()}: {jax.devices()[0].device_kind}), "
        f"torch {torch.__version__} on {TORCH_DEVICE} "
        f"({torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}); "
        f"{repeats} interleaved repeats, medians; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    runners: list[dict] = []
    for case in cases:
        for dtype in dtypes:
            config = case_config(case, dtype)
            entry = {
                "case": case,
                "dtype": dtype,
                "ours": Ours(config),
                "torch": Torch(config, compile=False),
                "compile": None,
            }
            if not args.no_compile:
                try:
                    entry["compile"] = Torch(config, compile=True)
                except Exception as e:  # noqa: BLE001 - report and go on without it
                    print(f"torch.compile failed for {case.name} B={case.batch}: {e!r}"[:300])
            print(
                f"built {case.name} B={case.batch} {dtype}: params {entry['torch'].counts} (equal "
                f"to ours); compile: ours {entry['ours'].compile_s:.1f}s, torch.compile "
                f"{getattr(entry['compile'], 'compile_s', float('nan')):.1f}s",
                flush=True,
            )
            runners.append(entry)
    matmul = Matmul(matmul_n)

    names = ("ours", "torch", "compile")
    times = [{name: [] for name in names} for _ in runners]
    peak_ms = []
    for i in range(warmup + repeats):
        keep = i >= warmup
        ms = time_ms(matmul)
        if keep:
            peak_ms.append(ms)
        for entry, record in zip(runners, times):
            for name in names if i % 2 else names[::-1]:  # alternate who goes first
                if entry[name] is not None:
                    ms = time_ms(entry[name])
                    if keep:
                        record[name].append(ms)

    peak = matmul.flops / np.median(peak_ms) / 1e6  # GFLOP/s
    print(f"\npeak: jnp.dot f32 {matmul_n}x{matmul_n} = {peak:.1f} GFLOP/s\n")
    header = (
        f"{'model':<30} {'B':>4} {'dtype':>8} {'ours ms':>8} {'torch ms':>9} {'compile ms':>10} "
        f"{'ours/torch':>10} {'ours/compile':>12} {'GFLOP/step':>10} {'GFLOP/s':>8} "
        f"{'of peak':>7} {'ours cmp s':>10} {'torch.cmp s':>11}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    rows = []
    for entry, record in zip(runners, times):
        case, ours, compiled = entry["case"], entry["ours"], entry["compile"]
        ours_ms = np.asarray(record["ours"])
        median = {name: np.median(v) if v else float("nan") for name, v in record.items()}
        # ratios and the fraction of peak per repeat (measured seconds apart), then the median
        ratio = float(np.median(ours_ms / np.asarray(record["torch"])))
        ratio_c = float(np.median(ours_ms / np.asarray(record["compile"]))) if compiled else np.nan
        of_peak = float(np.median(ours.flops / ours_ms / (matmul.flops / np.asarray(peak_ms))))
        worst = max(worst, ratio)
        torch_compile_s = getattr(compiled, "compile_s", np.nan)
        print(
            f"{case.name:<30} {case.batch:>4} {entry['dtype']:>8} {median['ours']:>8.1f} "
            f"{median['torch']:>9.1f} {na(median['compile'], '.1f'):>10} {ratio:>10.2f} "
            f"{na(ratio_c, '.2f'):>12} {ours.flops / 1e9:>10.2f} "
            f"{ours.flops / median['ours'] / 1e6:>8.1f} {of_peak:>7.0%} {ours.compile_s:>10.1f} "
            f"{na(torch_compile_s, '.1f'):>11}"
        )
        rows.append(
            {
                "model": case.name,
                "batch": case.batch,
                "dtype": entry["dtype"],
                "ours_ms": float(median["ours"]),
                "torch_eager_ms": float(median["torch"]),
                "torch_compile_ms": float(median["compile"]),
                "ours_over_eager": ratio,
                "ours_over_compile": float(ratio_c),
                "gflop_per_step": ours.flops / 1e9,
                "of_peak": of_peak,
                "ours_compile_s": ours.compile_s,
                "torch_compile_s": float(torch_compile_s),
            }
        )
    print(
        "\nours ms: jitted make_train_step (GAN: one D then one G update, G's EMA); torch ms: "
        "PyTorch eager; compile ms: torch.compile'd modules and optimizer steps.\nGFLOP/step: "
        "XLA cost analysis of our step; GFLOP/s and of peak: ours, against the jnp.dot peak.\n"
        "Ratios and 'of peak' are medians of per-repeat values; ms columns medians of times."
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print(f"worst_ratio={worst:.2f}")
    if args.json:
        facts = {
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind,
            "torch": torch.__version__,
            "torch_device": TORCH_DEVICE,
            "peak_gflops": peak,
            "repeats": repeats,
        }

        def strict(v):  # NaN (not measured) as JSON null
            return None if isinstance(v, float) and not np.isfinite(v) else v

        rows = [{k: strict(v) for k, v in row.items()} for row in rows]
        with open(args.json, "w") as f:
            json.dump({"facts": facts, "rows": rows, "worst_ratio": worst}, f, indent=2)


if __name__ == "__main__":
    main()
