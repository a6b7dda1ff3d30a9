"""`genimg`: one CLI with subcommands; it parses flags and config, then hands over.

genimg train   --config configs/vae_mnist.py[:quick] --workdir runs/vae [--config.model.beta=4]
genimg sample  --workdir runs/vae --num 64 --out grid.png [--format grid|npz|png-dir]
               [--truncation 0.7]   # StyleGAN2
genimg prepare --data bundled_mnist [--data_dir DIR]
genimg sweep   --config configs/beta_vae_shapes.py[:quick] --workdir runs/bvae_sweep
               [--member 7] [--launcher inprocess|local|submitit] [--workers N] [--vectorize]
genimg report  runs/bvae_sweep
genimg eval    --workdir runs/vae [--checkpoint latest|best] [--examples 1000] [--iwae_k 100]
               [--reference_split train|test]
genimg train-classifier --config configs/dcgan_mnist.py   # the feature net of GAN scores

`genimg COMMAND --help` lists the flags of COMMAND.
"""

import os
import sys

from absl import flags
from ml_collections import config_flags

from genimg_jax.core.errors import GenimgError
from genimg_jax.runtime import cpu_tuning

USAGE = __doc__

FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file `path.py[:arg]`; fields override as --config.a.b=v.",
    flag_values=FLAGS,
    lock_config=True,
)
flags.DEFINE_string(
    "workdir", None, "Run directory (checkpoints, metrics, samples).", flag_values=FLAGS
)
flags.DEFINE_integer("num", 64, "sample: number of images.", flag_values=FLAGS)
flags.DEFINE_string(
    "out",
    None,
    "sample: output file or folder (default WORKDIR/samples/sample.png, samples.npz or png/).",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "format",
    "grid",
    ["grid", "npz", "png-dir"],
    "sample: one PNG grid, a uint8 [N, H, W, C] npz (key images), or a folder of PNGs.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("seed", 0, "sample: seed of the latents.", flag_values=FLAGS)
flags.DEFINE_float(
    "truncation",
    None,
    "sample (stylegan2): truncation ψ, w_avg + ψ·(w − w_avg) (default eval.truncation; 1 = none).",
    flag_values=FLAGS,
)
flags.DEFINE_string("data", None, "prepare: TFDS data set name.", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "prepare: TFDS data dir.", flag_values=FLAGS)
flags.DEFINE_string(
    "sweep",
    None,
    "sweep: config file `path.py[:arg]` with get_sweep() (also given as --config).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("member", None, "sweep: run only this member.", flag_values=FLAGS)
flags.DEFINE_string("launcher", "inprocess", "sweep: inprocess|local|submitit.", flag_values=FLAGS)
flags.DEFINE_integer(
    "workers", 0, "sweep: parallel workers (0: sized to the machine).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "examples",
    None,
    "eval: test examples / samples scored (default eval.examples).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "iwae_k", None, "eval: importance samples of IWAE (default eval.iwae_k).", flag_values=FLAGS
)
flags.DEFINE_string(
    "reference_split",
    None,
    "eval (GANs): the split of real images samples are compared with (default "
    "eval.reference_split, '' = data.eval_split).",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "checkpoint", "latest", ["latest", "best"], "eval, sample: which checkpoint.", flag_values=FLAGS
)
flags.DEFINE_bool("vectorize", False, "sweep: train the members as one program.", flag_values=FLAGS)
flags.DEFINE_string(
    "vectorize_mode",
    "auto",
    "sweep: auto (vmap on GPU/TPU, sequential on CPU) | sequential | vmap | map | unroll.",
    flag_values=FLAGS,
)


class UsageError(GenimgError):
    """Bad command line; the message says what to change."""

    exit_code = 2


def _require(name: str) -> str:
    value = FLAGS[name].value
    if not value:
        raise UsageError(f"--{name} is required")
    return value


def load_config(workdir: str | None):
    """The --config file with overrides, else the config saved in an existing workdir."""
    if _CONFIG.value is not None:
        return _CONFIG.value
    saved = workdir and os.path.join(workdir, "config.json")
    if saved and os.path.exists(saved):
        from genimg_jax.config import load_saved

        return load_saved(saved)
    raise UsageError("--config is required (or a --workdir holding config.json from a run)")


def cmd_train() -> None:
    """Trains a config in a workdir, or resumes the run the workdir holds."""
    from genimg_jax.train import loop as trainer

    workdir = _require("workdir")
    trainer.train_and_evaluate(load_config(workdir), workdir)


def cmd_sample() -> None:
    """Writes samples from a run's latest (or best) checkpoint: a grid, an npz array or a
    folder of PNGs (for pytorch-fid, clean-fid, torch-fidelity)."""
    from genimg_jax.cli import sample

    workdir = _require("workdir")
    default = {"grid": "sample.png", "npz": "samples.npz", "png-dir": "png"}[FLAGS.format]
    out = FLAGS.out or os.path.join(workdir, "samples", default)
    config = load_config(workdir)
    if FLAGS.truncation is not None:
        if "truncation" not in config.eval:
            raise UsageError(
                f"--truncation: model.family={config.model.family!r} has no w to truncate; "
                "it applies to the stylegan2 family"
            )
        config.eval.truncation = FLAGS.truncation
    print(
        sample.export(config, workdir, FLAGS.num, out, FLAGS.format, FLAGS.seed, FLAGS.checkpoint)
    )


def cmd_prepare() -> None:
    """Prepares a data set as array_record in its TFDS data dir."""
    from genimg_jax.data import pipeline

    builder = pipeline.prepare(_require("data"), FLAGS.data_dir)
    print(f"{builder.name} is prepared in {builder.data_dir}")


def cmd_sweep() -> None:
    """Runs the members of a sweep (a config file with get_sweep()), or one of them."""
    from genimg_jax.sweeps import run as sweep_run

    ran = sweep_run.run(
        _require("sweep"),
        _require("workdir"),
        member=FLAGS.member,
        launcher=FLAGS.launcher,
        workers=FLAGS.workers,
        vectorize=FLAGS.vectorize,
        vectorize_mode=FLAGS.vectorize_mode,
    )
    print(f"ran {len(ran)} member(s): {', '.join(m.name for m in ran) or 'all were finished'}")


def cmd_report() -> None:
    """Writes a sweep's summary table and plots (usage: genimg report SWEEP_WORKDIR)."""
    from genimg_jax.sweeps import report

    workdir = FLAGS.workdir or (_POSITIONAL[0] if _POSITIONAL else None)
    if not workdir:
        raise UsageError("usage: genimg report SWEEP_WORKDIR")
    for path in report.report(workdir):
        print(path)


def cmd_eval() -> None:
    """Scores a run's latest (or best) checkpoint and writes eval_<step>.json."""
    import json

    from genimg_jax.cli import eval as eval_workdir

    workdir = _require("workdir")
    config = load_config(workdir)
    with config.unlocked():
        if FLAGS.examples is not None:
            config.eval.examples = FLAGS.examples
        if FLAGS.iwae_k is not None and "iwae_k" in config.eval:
            config.eval.iwae_k = FLAGS.iwae_k
        if FLAGS.reference_split is not None and "reference_split" in config.eval:
            config.eval.reference_split = FLAGS.reference_split
    scores = eval_workdir.evaluate_workdir(config, workdir, FLAGS.checkpoint)
    print(json.dumps(scores, indent=2))


def cmd_train_classifier() -> None:
    """Trains (and caches) the domain classifier that GAN scores use as features."""
    from genimg_jax.features import feature_nets
    from genimg_jax.train import loop as trainer

    if _CONFIG.value is None:
        raise UsageError("--config is required")
    config = trainer.start_up(_CONFIG.value)
    _, accuracy, path = feature_nets.train_domain_classifier(config)
    print(
        f"domain classifier for {config.data.name}: test accuracy {accuracy:.4f}, saved to {path}"
    )


_POSITIONAL: list[str] = []
COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "prepare": cmd_prepare,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "eval": cmd_eval,
    "train-classifier": cmd_train_classifier,
}


# The flags each command takes (absl parses them all; `main` refuses the others by name).
TAKES = {
    "train": ("config", "workdir"),
    "sample": ("config", "workdir", "checkpoint", "num", "format", "out", "seed", "truncation"),
    "prepare": ("data", "data_dir"),
    "sweep": ("sweep", "workdir", "member", "launcher", "workers", "vectorize", "vectorize_mode"),
    "report": ("workdir",),
    "eval": ("config", "workdir", "checkpoint", "examples", "iwae_k", "reference_split"),
    "train-classifier": ("config",),
}
HELP = ("--help", "-h", "--helpfull", "-help")


def command_help(command: str) -> str:
    """`genimg COMMAND --help`: what the command does and the flags it takes."""
    lines = [f"genimg {command}: {COMMANDS[command].__doc__.strip()}", "", "flags:"]
    for name in TAKES[command]:
        flag = FLAGS[name]
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        lines.append(f"  --{name}: {flag.help}{default}")
    if "config" in TAKES[command]:
        lines.append(
            "  --config.FIELD=VALUE: override any config field, e.g. --config.model.beta=4"
        )
    return "\n".join(lines)


def _sweep_config_as_sweep_flag(args: list[str]) -> list[str]:
    """`genimg sweep --config FILE` means `--sweep FILE` (the flag `train` takes)."""
    return ["--sweep" + a[len("--config") :] if a.split("=")[0] == "--config" else a for a in args]


def main(argv: list[str]) -> int:
    """Runs `genimg <command> [flags]`; returns the exit status."""
    if len(argv) >= 2 and argv[1] in HELP + ("help",):
        print(USAGE)
        return 0
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    if any(a in HELP for a in args):
        print(command_help(command))
        return 0
    if command == "sweep":
        args = _sweep_config_as_sweep_flag(args)
    saved_argv, sys.argv = sys.argv, [argv[0]] + args  # config_flags reads sys.argv too
    try:
        FLAGS.unparse_flags()  # main() may run more than once in a process (tests, notebooks):
        for name in [n for n in FLAGS if n.startswith("config.")]:  # the last call's overrides
            delattr(FLAGS, name)
        _POSITIONAL[:] = FLAGS(sys.argv)[1:]
        foreign = [
            f"--{n}" for n in FLAGS if FLAGS[n].present and n.split(".")[0] not in TAKES[command]
        ]
        if foreign:
            raise UsageError(
                f"genimg {command} does not take {', '.join(sorted(foreign))}; its flags: "
                f"{', '.join('--' + n for n in TAKES[command])} (genimg {command} --help)"
            )
        COMMANDS[command]()
    except flags.Error as e:
        return _fail(f"bad flag: {e}")
    except AttributeError as e:  # lock_config: an override names a field that does not exist
        if not any(a.startswith("--config.") for a in argv):
            raise
        inner = e.args[0] if e.args else e
        text = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)
        return _fail(f"bad config override: no config field {text}".replace("\n", "; "))
    except GenimgError as e:
        return _fail(str(e), e.exit_code)
    finally:
        sys.argv = saved_argv
    return 0


def _fail(message: str, exit_code: int = 2) -> int:
    print(f"genimg: error: {message}", file=sys.stderr)
    return exit_code


def run() -> None:
    """Console-script entry point: the CPU settings (cpu_tuning.py) when the run will be on
    CPU, before anything starts JAX; then the command."""
    cpu_tuning.tune_if_cpu()
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
