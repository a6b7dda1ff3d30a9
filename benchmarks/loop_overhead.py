"""Loop overhead: the trainer's images/s on the default main job vs its bare compiled step.

Run: `.venv/bin/python benchmarks/loop_overhead.py [--steps 2000] [--segment 100] [--rounds 2]`.

The trainer (`trainer.train_and_evaluate`) runs configs/dcgan_mnist.py at its own intervals (log
every 100, sample grids and checkpoints every 1000; scores off: FID etc. is evaluation work a run
asks for, not loop overhead) for `--steps` steps in a fresh workdir on bundled MNIST, prepared
beforehand in a temporary TFDS dir (unless $TFDS_DATA_DIR is set).

This machine's speed drifts by +-15% over tens of seconds, more than the overhead measured, so
the bare step is timed inside the trainer's run, interleaved with it. The loop is not modified:
`pipeline.Batches.iterate` and `programs.compiled_strategy` are wrapped, and every `--segment`
steps, as the loop draws its next batch, the wrapper waits for the trainer's last step, closes
the trainer's segment (its wall-clock time: data, dispatch, logs, and any evaluation or
checkpoint in it), runs `--segment` steps of
- the bare step: `jax.jit(families.make_train_step(config), donate_argnums=0)` on a fixed batch,
- the trainer's own compiled program (`make_strategy` + divergence guard) on a fixed batch,
each dispatched back to back and waited for at the end, then opens the next trainer segment.
The first segment (compilation) is not counted; the last ends when `train_and_evaluate` returns
(its final checkpoint written). A warm-up run first compiles the loop's programs.

`loop_overhead=X%`, the last line: the trainer's time over all counted segments of all rounds
over the bare step's time for as many steps, minus 1.
"""

import argparse
import atexit
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple, Self

import jax
import numpy as np

try:
    import genimg_jax  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`: import from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg_jax.runtime import setup as runtime_setup

runtime_setup.tune_if_cpu()  # what the `genimg` command applies, before JAX starts

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.data import pipeline
from genimg_jax.runtime import parallel
from genimg_jax.training import guard as guard_lib
from genimg_jax.training import loop as trainer
from genimg_jax.training import programs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py's get_config(arg)."""
    return config_lib.from_file(os.path.join(REPO, "configs", f"{name}.py"), arg)


def main_job_config(run_steps: int, batch: int = 0, image_size: int = 0, per_call: int = 1):
    """configs/dcgan_mnist.py on one device for `run_steps` steps at its own intervals (batch
    size and image size overridden where given), `per_call` steps per dispatch."""
    config = load_config("dcgan_mnist")
    config.train.steps = run_steps
    config.train.steps_per_dispatch = per_call
    config.train.batch_size = batch or config.train.batch_size
    config.data.image_size = image_size or config.data.image_size
    config.parallel.num_devices = 1
    config.eval.scores = False  # FID etc.: evaluation a run asks for, not loop overhead
    return config


class Chunks:
    """A compiled program run in chunks of `calls` calls dispatched back to back on a fixed
    batch."""

    def __init__(self, step, carry, batch, key, calls: int):
        self.step, self.carry, self.batch, self.key, self.calls = step, carry, batch, key, calls
        self.run()  # compile and warm up

    def run(self) -> float:
        """Seconds of one chunk."""
        start = time.perf_counter()
        for _ in range(self.calls):
            self.carry, metrics = self.step(self.carry, self.batch, self.key)
        jax.block_until_ready((self.carry, metrics))
        return time.perf_counter() - start


class Segment(NamedTuple):
    """`n` trainer steps from `first`, and `n` steps of each reference chunk timed right after."""

    first: int
    n: int
    trainer: float
    bare: float
    guarded: float


class Interleaved:
    """While active, every `n` steps of a trainer run (as the loop draws batch k·n) waits for the
    trainer's last step, closes its segment, times one chunk of each reference and opens the next
    segment. `close()` ends the last segment."""

    def __init__(self, bare: Chunks, guarded: Chunks, n: int):
        self.bare, self.guarded, self.n = bare, guarded, n
        self.segments: list[Segment] = []
        self._last_outputs = None
        self._open: tuple[int, float] | None = None  # (first step, start time) of the segment

    def _close(self, step: int) -> None:
        jax.block_until_ready(self._last_outputs)
        now = time.perf_counter()
        if self._open is not None:
            first, began = self._open
            if len(self.segments) % 2:  # alternate which reference runs first after a segment
                bare, guarded = self.bare.run(), self.guarded.run()
            else:
                guarded, bare = self.guarded.run(), self.bare.run()
            self.segments.append(Segment(first, step - first, now - began, bare, guarded))
        self._open = (step, time.perf_counter())

    def close(self, step: int, outputs) -> None:
        """Ends the open segment at `step`, once `outputs` (the run's result) are ready."""
        self._last_outputs = outputs
        self._close(step)
        self._open = None

    def __enter__(self) -> Self:
        self._originals = pipeline.Batches.iterate, programs.compiled_strategy
        iterate, compiled_strategy = self._originals

        def interleaved_iterate(batches, start, stop, *args, **kwargs):
            for step, batch in enumerate(iterate(batches, start, stop, *args, **kwargs), start):
                if step > start and (step - start) % self.n == 0:
                    self._close(step)  # the first time, none is open: compilation not counted
                yield batch

        def recording_strategy(*args) -> programs.Strategy:
            strategy = compiled_strategy(*args)

            def steps(n: int):
                def step(*step_args):
                    self._last_outputs = strategy.steps(n)(*step_args)
                    return self._last_outputs

                return step

            return strategy._replace(steps=steps)

        pipeline.Batches.iterate = interleaved_iterate
        programs.compiled_strategy = recording_strategy
        return self

    def __exit__(self, *exc) -> None:
        pipeline.Batches.iterate, programs.compiled_strategy = self._originals


def trainer_run(config, interleaved: Interleaved | None, progress: bool) -> None:
    """Trains `config` once in a fresh workdir, interleaved with the references if given."""
    workdir = tempfile.mkdtemp(prefix="genimg_loop_overhead_")
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with quiet, interleaved or contextlib.nullcontext():
            state = trainer.train_and_evaluate(config, workdir)
            if interleaved is not None:
                interleaved.close(config.train.steps, state)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def holds_event(segment: Segment, config) -> bool:
    """Whether an evaluation or checkpoint is due at a step the segment completes."""
    every = (config.eval.every, config.train.checkpoint_every)
    last = segment.first + segment.n
    return last == config.train.steps or any((last // e) > (segment.first // e) for e in every)


DEFAULTS = {"steps": 2000, "segment": 100, "rounds": 2, "batch": 0, "image_size": 0}
TINY = {"steps": 1200, "segment": 100, "rounds": 1, "batch": 4, "image_size": 16}
DISPATCH = {"sync": "false", "async": "true"}  # JAX_CPU_ENABLE_ASYNC_DISPATCH per mode


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="trainer steps per round (2000)")
    parser.add_argument("--segment", type=int, help="steps per interleaved segment (100)")
    parser.add_argument("--rounds", type=int, help="trainer runs measured (2)")
    parser.add_argument("--progress", action="store_true", help="show the trainer's progress bar")
    parser.add_argument("--batch", type=int, help="batch size (the config's)")
    parser.add_argument("--image-size", type=int, help="pixels (the config's)")
    parser.add_argument(
        "--steps-per-dispatch", type=int, default=1, help="the trainer's train.steps_per_dispatch"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="accelerator-like millisecond steps: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in TINY.items())
        + "; both dispatch modes",
    )
    parser.add_argument(
        "--dispatch",
        choices=["both", "current", *DISPATCH],
        default="",
        help="single-device CPU dispatch: 'sync' (the CLI's default), 'async' (as on GPU/TPU), "
        "'both' (one process each; the default with --tiny) or 'current' (this process's)",
    )
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for key, value in (TINY if args.tiny else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.dispatch = args.dispatch or ("both" if args.tiny else "current")
    return args


def both_modes(args: argparse.Namespace) -> None:
    """Runs this benchmark once per dispatch mode, each in its own process, and tabulates."""
    results = {}
    for mode, value in DISPATCH.items():
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            argv = [a for a in sys.argv[1:] if not a.startswith("--dispatch")]
            argv += ["--dispatch", mode, "--json", out.name]
            print(f"== dispatch {mode} (JAX_CPU_ENABLE_ASYNC_DISPATCH={value})", flush=True)
            env = os.environ | {"JAX_CPU_ENABLE_ASYNC_DISPATCH": value}
            subprocess.run([sys.executable, __file__, *argv], env=env, check=True)
            with open(out.name) as f:
                results[mode] = json.load(f)
    print(
        "\n| dispatch | bare step | trainer's program (guard) | trainer between evaluations "
        "| all segments |\n|---|---|---|---|---|"
    )
    for mode, r in results.items():
        print(
            f"| {mode} | {r['bare_ms']:.1f} ms | {r['guarded_over_bare']:.2f}x "
            f"| {r['between_evaluations_over_bare']:.2f}x | {r['trainer_over_bare']:.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def main() -> None:
    args = parse_args()
    if args.dispatch == "both":
        return both_modes(args)
    if args.dispatch != "current":
        value = os.environ.get("JAX_CPU_ENABLE_ASYNC_DISPATCH", "").lower()
        assert value == DISPATCH[args.dispatch], "run --dispatch sync/async through --dispatch both"
    if not os.environ.get("TFDS_DATA_DIR"):  # a private data dir, removed at exit
        os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="genimg_tfds_")
        atexit.register(shutil.rmtree, os.environ["TFDS_DATA_DIR"], ignore_errors=True)
    k = args.steps_per_dispatch
    config = main_job_config(args.steps, args.batch, args.image_size, k)
    assert args.steps >= 3 * args.segment, "--steps must span at least 3 segments"
    assert args.segment % k == 0, "--segment must be a multiple of --steps-per-dispatch"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        pipeline.prepare_data(config.data)  # quietly: TFDS's progress
    b, s, c = config.train.batch_size, config.data.image_size, config.data.channels
    print(
        f"configs/dcgan_mnist.py: {s}x{s}x{c}, batch {b}, {args.steps} steps per round, {k} per "
        f"call, log every {config.train.log_every}, sample grids every {config.eval.every}, "
        f"checkpoints every {config.train.checkpoint_every}; segments of {args.segment} steps; "
        f"{jax.device_count()} {jax.default_backend()} device, {os.cpu_count()} cores, async "
        f"dispatch {jax.config.read('jax_cpu_enable_async_dispatch')}, load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )

    mesh = parallel.make_mesh(1)
    images = np.random.default_rng(0).uniform(-1, 1, (b, s, s, c)).astype(np.float32)
    fixed = {"image": images, "label": np.arange(b, dtype=np.int32) % 10}  # the digits' classes
    key = jax.random.PRNGKey(0)
    bare = Chunks(
        jax.jit(families.make_train_step(config), donate_argnums=0),
        families.initial_state(config, mesh),
        jax.device_put(fixed),
        key,
        args.segment,
    )
    strategy = programs.make_strategy(config, mesh)
    fresh_guard = parallel.replicate_global(guard_lib.fresh(), mesh)  # placed as step outputs
    stacked = jax.tree.map(lambda x: np.stack([x] * k), fixed) if k > 1 else fixed
    guarded = Chunks(  # the trainer's program: k steps per call
        strategy.steps(k),
        strategy.place_state((families.initial_state(config, mesh), fresh_guard)),
        strategy.place_batch(stacked, steps=k),
        parallel.replicate_global(key, mesh),
        args.segment // k,
    )

    warm_up = main_job_config(2 * args.segment, args.batch, args.image_size, k)  # compiles all
    warm_up.eval.every = warm_up.train.checkpoint_every = args.segment
    trainer_run(warm_up, None, args.progress)
    segments: list[Segment] = []
    for i in range(args.rounds):
        interleaved = Interleaved(bare, guarded, args.segment)
        trainer_run(config, interleaved, args.progress)
        mine = interleaved.segments
        segments += mine
        ratio = sum(g.trainer for g in mine) / sum(g.bare for g in mine)
        print(f"round {i + 1}: {len(mine)} segments, trainer / bare {ratio:.3f}x", flush=True)

    def total(kind: str, selected=segments) -> float:
        """Seconds per step over the selected segments."""
        return sum(getattr(g, kind) for g in selected) / sum(g.n for g in selected)

    def line(name: str, step_s: float, note: str = "") -> None:
        print(f"{name:<36} {b / step_s:6.0f} images/s {step_s * 1e3:6.1f} ms/step {note}")

    plain = [g for g in segments if not holds_event(g, config)]
    events = [g for g in segments if holds_event(g, config)]
    bare_s = total("bare")
    line("bare compiled step", bare_s, f"({len(segments)} segments of {args.segment} steps)")
    line(
        "trainer's compiled program (guard)",
        total("guarded"),
        f"({total('guarded') / bare_s:.3f}x)",
    )
    plain_ratio = total("trainer", plain) / total("bare", plain)
    line(
        "trainer between evaluations",
        bare_s * plain_ratio,
        f"({plain_ratio:.3f}x; data, dispatch, logs, guard)",
    )
    if events:
        extra = np.median([g.trainer - g.bare * plain_ratio for g in events])
        print(
            f"{'a segment with grids + checkpoint':<36} {extra * 1e3:+.0f} ms "
            f"(median of {len(events)}; one every {config.eval.every} steps)"
        )
    overall = total("trainer") / bare_s
    line("trainer, all counted segments", total("trainer"), f"({overall:.3f}x)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"loop_overhead={100 * (overall - 1):.1f}%")
    if args.json:
        result = {
            "backend": jax.default_backend(),
            "async_dispatch": bool(jax.config.read("jax_cpu_enable_async_dispatch")),
            "batch": b,
            "image_size": s,
            "steps_per_dispatch": k,
            "bare_ms": bare_s * 1e3,
            "bare_images_per_s": b / bare_s,
            "guarded_images_per_s": b / total("guarded"),
            "trainer_images_per_s": b / total("trainer"),
            "guarded_over_bare": total("guarded") / bare_s,
            "between_evaluations_over_bare": plain_ratio,
            "trainer_over_bare": overall,
            "segments": len(segments),
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
