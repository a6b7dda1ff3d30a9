"""`genimg`: one CLI with subcommands; each parses its own flags and config, applies the runtime
setup (`runtime.setup`: the only place process-wide settings are written), then hands over.

genimg train   --config configs/vae_mnist.py[:quick] --workdir runs/vae [--config.model.beta=4]
genimg sample  --workdir runs/vae --num 64 --out grid.png [--format grid|npz|png-dir]
               [--config.eval.truncation=0.7]   # StyleGAN2's ψ
genimg reconstruct --workdir runs/vqgan [--num 32] [--split test] [--out grid.png]
genimg encode  --workdir runs/vqgan [--split train] [--out codes.npz]   # codes or latents
genimg decode  --workdir runs/vqgan --latents codes.npz [--out grid.png] [--format npz]
genimg prepare --data bundled_mnist [--data_dir DIR]
genimg sweep   --config configs/beta_vae_shapes.py[:quick] --workdir runs/bvae_sweep
               [--config.train.steps=50] [--member 7] [--launcher inprocess|local|submitit]
               [--workers N] [--vectorize]
genimg report  runs/bvae_sweep
genimg eval    --workdir runs/vae [--checkpoint latest|best] [--config.eval.examples=1000]
               [--config.eval.iwae_k=100] [--config.eval.reference_split=train]
genimg train-classifier --config configs/dcgan_mnist.py   # the feature net of GAN scores
genimg inception-weights convert pt_inception-2015-12-05-6726825d.pth inception_fid.npz
genimg inception-weights check inception_fid.npz     # FID's InceptionV3 (docs/inception_weights.md)
genimg lpips-weights convert vgg16-397923af.pth vgg.pth lpips_vgg.npz   # LPIPS (README)

Every command that reads a config takes --config FILE[:arg] with --config.FIELD=VALUE overrides;
without --config, the config saved in --workdir (config.json) is read, and overridden the same
way. `genimg COMMAND --help` lists the flags of COMMAND.
"""

import json
import os
import sys
from collections.abc import Callable

from absl import flags
from ml_collections import config_flags

from genimg_jax.core.errors import GenimgError

USAGE = __doc__
HELP = ("--help", "-h", "--helpfull", "-help")


class UsageError(GenimgError):
    """Bad command line; the message says what to change."""

    exit_code = 2


# --------------------------------------------------------------------------------------------
# Each command's flags, defined on a FlagValues of its own.


def _workdir(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "workdir", None, "Run directory (checkpoints, metrics, samples).", flag_values=fv
    )


def _checkpoint(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum(
        "checkpoint", "latest", ["latest", "best"], "Which checkpoint.", flag_values=fv
    )


def _sample_flags(fv: flags.FlagValues) -> None:
    _workdir(fv)
    _checkpoint(fv)
    flags.DEFINE_integer("num", 64, "Number of images.", flag_values=fv)
    flags.DEFINE_string(
        "out",
        None,
        "Output file or folder (default WORKDIR/samples/sample.png, samples.npz or png/).",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "format",
        "grid",
        ["grid", "npz", "png-dir"],
        "One PNG grid, a uint8 [N, H, W, C] npz (key images), or a folder of PNGs.",
        flag_values=fv,
    )
    flags.DEFINE_integer("seed", 0, "Seed of the latents.", flag_values=fv)


def _latent_flags(fv: flags.FlagValues, num: int, num_help: str, split: str, out: str) -> None:
    _workdir(fv)
    _checkpoint(fv)
    flags.DEFINE_integer("num", num, num_help, flag_values=fv)
    flags.DEFINE_string("split", "", f"The split's images (default: {split}).", flag_values=fv)
    flags.DEFINE_string("out", None, f"Output file (default WORKDIR/{out}).", flag_values=fv)


def _decode_flags(fv: flags.FlagValues) -> None:
    _workdir(fv)
    _checkpoint(fv)
    flags.DEFINE_string("latents", None, "An .npz written by genimg encode.", flag_values=fv)
    flags.DEFINE_string(
        "out",
        None,
        "Output file or folder (default WORKDIR/decoded.png, .npz or png/).",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "format",
        "grid",
        ["grid", "npz", "png-dir"],
        "One PNG grid, a uint8 [N, H, W, C] npz (key images), or a folder of PNGs.",
        flag_values=fv,
    )


def _prepare_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("data", None, "TFDS data set name.", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data dir.", flag_values=fv)


def _sweep_flags(fv: flags.FlagValues) -> None:
    _workdir(fv)
    flags.DEFINE_integer("member", None, "Run only this member.", flag_values=fv)
    flags.DEFINE_string("launcher", "inprocess", "inprocess|local|submitit.", flag_values=fv)
    flags.DEFINE_integer(
        "workers", 0, "Parallel workers (0: sized to the machine).", flag_values=fv
    )
    flags.DEFINE_bool("vectorize", False, "Train the members as one program.", flag_values=fv)
    flags.DEFINE_string(
        "vectorize_mode",
        "auto",
        "auto (vmap on GPU/TPU, sequential on CPU) | sequential | vmap | map | unroll.",
        flag_values=fv,
    )


# --------------------------------------------------------------------------------------------
# Parsing: the command's own flags first, then --config (a file, or the workdir's config.json)
# with its overrides.


def _parse(
    argv0: str, args: list[str], define: Callable, takes_config: bool
) -> tuple[flags.FlagValues, list[str]]:
    """The command's flags parsed from `args`, with `--config` (and its overrides) when the
    command `takes_config`; and the positional arguments (commands without a config)."""
    fv = flags.FlagValues()
    define(fv)
    if not takes_config:
        return fv, fv([argv0, *args])[1:]
    own = fv([argv0, *args], known_only=True)  # --workdir is known before the config is read
    given = any(a.split("=")[0] == "--config" for a in args)
    workdir = fv["workdir"].value if "workdir" in fv else None
    if given:
        config_flags.DEFINE_config_file(
            "config",
            None,
            "Config file path.py[:arg]",
            fv,
            lock_config=True,
            sys_argv=[argv0, *args],
        )
    elif workdir and os.path.exists(os.path.join(workdir, "config.json")):
        from genimg_jax import config as config_lib

        saved = config_lib.load_saved(os.path.join(workdir, "config.json"))
        config_flags.DEFINE_config_dict(
            "config", saved, "The run's config", fv, lock_config=True, sys_argv=[argv0, *args]
        )
    else:
        raise UsageError("--config is required (or a --workdir holding config.json from a run)")
    try:
        rest = fv(own, known_only=False)
        _ = fv["config"].value  # the overrides are applied (and checked) when it is read
    except (AttributeError, KeyError) as e:  # lock_config: an override names no field
        text = e.args[0] if e.args else e
        raise UsageError(
            f"bad config override: no config field {text}".replace("\n", "; ")
        ) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}")
    return fv, []


def _require(fv: flags.FlagValues, name: str) -> str:
    value = fv[name].value
    if not value:
        raise UsageError(f"--{name} is required")
    return value


def _setup(config):
    """The runtime setup for `config`, then `config` (validated)."""
    from genimg_jax import config as config_lib
    from genimg_jax.runtime import setup

    config_lib.validate(config)
    setup.setup_runtime(config)
    return config


# --------------------------------------------------------------------------------------------
# The commands.


def cmd_train(fv: flags.FlagValues, _: list[str]) -> None:
    """Trains a config in a workdir, or resumes the run the workdir holds."""
    from genimg_jax.training import loop

    loop.train_and_evaluate(_setup(fv.config), _require(fv, "workdir"))


def cmd_sample(fv: flags.FlagValues, _: list[str]) -> None:
    """Writes samples from a run's latest (or best) checkpoint: a grid, an npz array or a
    folder of PNGs (for pytorch-fid, clean-fid, torch-fidelity)."""
    from genimg_jax.cli import sample

    workdir = _require(fv, "workdir")
    default = {"grid": "sample.png", "npz": "samples.npz", "png-dir": "png"}[fv.format]
    out = fv.out or os.path.join(workdir, "samples", default)
    config = _setup(fv.config)
    print(sample.export(config, workdir, fv.num, out, fv.format, fv.seed, fv.checkpoint))


def cmd_reconstruct(fv: flags.FlagValues, _: list[str]) -> None:
    """Writes a grid of a split's first images (rows of originals above rows of their
    reconstructions) through a run's encoder and decoder (an autoencoder or a VAE)."""
    from genimg_jax.cli import latents

    workdir = _require(fv, "workdir")
    config = _setup(fv.config)
    out = fv.out or os.path.join(workdir, "reconstructions.png")
    split = fv.split or config.data.eval_split
    print(latents.reconstruct(config, workdir, out, fv.num, split, fv.checkpoint))


def cmd_encode(fv: flags.FlagValues, _: list[str]) -> None:
    """Writes the codes (a codebook) or latent means of a split's images, with their labels,
    to an .npz: what a model trained on latents reads."""
    from genimg_jax.cli import latents

    workdir = _require(fv, "workdir")
    config = _setup(fv.config)
    split = fv.split or config.data.train_split
    out = fv.out or os.path.join(workdir, f"latents_{split}.npz")
    print(latents.encode(config, workdir, out, split, fv.num, fv.checkpoint))


def cmd_decode(fv: flags.FlagValues, _: list[str]) -> None:
    """Decodes the codes or latents of an .npz (genimg encode's, or a model's on latents) to
    images: a grid, an npz array or a folder of PNGs."""
    from genimg_jax import families
    from genimg_jax.cli import latents, sample

    workdir, path = _require(fv, "workdir"), _require(fv, "latents")
    config = _setup(fv.config)
    default = {"grid": "decoded.png", "npz": "decoded.npz", "png-dir": "decoded"}[fv.format]
    out = fv.out or os.path.join(workdir, default)
    images = latents.decode(config, workdir, path, fv.checkpoint)
    value_range = families.of(config).value_range
    print(sample.write_images([images], len(images), out, fv.format, value_range))


def cmd_prepare(fv: flags.FlagValues, _: list[str]) -> None:
    """Prepares a data set as array_record in its TFDS data dir."""
    from genimg_jax.data import pipeline

    builder = pipeline.prepare(_require(fv, "data"), fv.data_dir)
    print(f"{builder.name} is prepared in {builder.data_dir}")


def cmd_sweep(fv: flags.FlagValues, _: list[str]) -> None:
    """Runs the members of a sweep (a config file with get_sweep()), or one of them; the
    --config.FIELD overrides apply to every member (recorded in sweep.json)."""
    from genimg_jax.sweeps import run as sweep_run

    path = config_flags.get_config_filename(fv["config"])
    overrides = config_flags.get_override_values(fv["config"])
    _setup(fv.config)
    ran = sweep_run.run(
        path,
        _require(fv, "workdir"),
        member=fv.member,
        launcher=fv.launcher,
        workers=fv.workers,
        vectorize=fv.vectorize,
        vectorize_mode=fv.vectorize_mode,
        overrides=overrides,
    )
    print(f"ran {len(ran)} member(s): {', '.join(m.name for m in ran) or 'all were finished'}")


def cmd_report(fv: flags.FlagValues, positional: list[str]) -> None:
    """Writes a sweep's summary table and plots (usage: genimg report SWEEP_WORKDIR)."""
    from genimg_jax.sweeps import report

    workdir = fv.workdir or (positional[0] if positional else None)
    if not workdir:
        raise UsageError("usage: genimg report SWEEP_WORKDIR")
    for path in report.report(workdir):
        print(path)


def cmd_eval(fv: flags.FlagValues, _: list[str]) -> None:
    """Scores a run's latest (or best) checkpoint and writes eval_<step>.json."""
    from genimg_jax.cli import eval as eval_workdir

    workdir = _require(fv, "workdir")
    scores = eval_workdir.evaluate_workdir(_setup(fv.config), workdir, fv.checkpoint)
    print(json.dumps(scores, indent=2))


def cmd_train_classifier(fv: flags.FlagValues, _: list[str]) -> None:
    """Trains (and caches) the domain classifier that GAN scores use as features."""
    from genimg_jax.features import feature_nets

    config = _setup(fv.config)
    _, accuracy, path = feature_nets.train_domain_classifier(config)
    print(
        f"domain classifier for {config.data.name}: test accuracy {accuracy:.4f}, saved to {path}"
    )


def cmd_inception_weights(fv: flags.FlagValues, positional: list[str]) -> None:
    """FID's Inception-v3 weights: `convert PTH NPZ` turns pytorch-fid's checkpoint into the .npz
    eval.inception_weights reads (needs torch), `check NPZ` validates one."""
    from genimg_jax.features import inception

    usage = "usage: genimg inception-weights convert PTH NPZ | check NPZ"
    action, paths = (positional[0], positional[1:]) if positional else ("", [])
    if (action, len(paths)) not in (("convert", 2), ("check", 1)):
        raise UsageError(usage)
    try:
        if action == "convert":
            out = inception.convert(*paths)
            size = os.path.getsize(out) / 2**20
            print(f"wrote {out} ({len(inception.expected_shapes())} tensors, {size:.1f} MiB)")
        else:
            inception.load_weights(paths[0])
            print(f"{paths[0]}: OK ({len(inception.expected_shapes())} tensors)")
    except (FileNotFoundError, ValueError, TypeError, ImportError) as e:
        raise WeightsError(str(e)) from None


def cmd_lpips_weights(fv: flags.FlagValues, positional: list[str]) -> None:
    """LPIPS' VGG16 weights: `convert VGG16_PTH LPIPS_VGG_PTH NPZ` joins torchvision's VGG16 and
    the lpips package's heads into the .npz eval.lpips_weights reads (needs torch), `check NPZ`
    validates one."""
    from genimg_jax.features import lpips

    action, paths = (positional[0], positional[1:]) if positional else ("", [])
    if (action, len(paths)) not in (("convert", 3), ("check", 1)):
        raise UsageError(
            "usage: genimg lpips-weights convert VGG16_PTH LPIPS_VGG_PTH NPZ | check NPZ"
        )
    try:
        if action == "convert":
            print(f"wrote {lpips.convert(*paths)} ({len(lpips.torch_names())} tensors)")
        else:
            lpips.load_weights(paths[0])
            print(f"{paths[0]}: OK ({len(lpips.torch_names())} tensors)")
    except (FileNotFoundError, ValueError, TypeError, ImportError) as e:
        raise WeightsError(str(e)) from None


class WeightsError(GenimgError):
    """A weights file that cannot be converted or read."""


def _both(*defines: Callable) -> Callable:
    return lambda fv: [define(fv) for define in defines]


# name -> (run, its flags, whether it reads a config)
COMMANDS = {
    "train": (cmd_train, _workdir, True),
    "sample": (cmd_sample, _sample_flags, True),
    "reconstruct": (
        cmd_reconstruct,
        lambda fv: _latent_flags(fv, 32, "Images shown.", "data.eval_split", "reconstructions.png"),
        True,
    ),
    "encode": (
        cmd_encode,
        lambda fv: _latent_flags(
            fv, 0, "Images encoded (0: all).", "data.train_split", "latents_SPLIT.npz"
        ),
        True,
    ),
    "decode": (cmd_decode, _decode_flags, True),
    "prepare": (cmd_prepare, _prepare_flags, False),
    "sweep": (cmd_sweep, _sweep_flags, True),
    "report": (cmd_report, _workdir, False),
    "eval": (cmd_eval, _both(_workdir, _checkpoint), True),
    "train-classifier": (cmd_train_classifier, _workdir, True),
    "inception-weights": (cmd_inception_weights, lambda fv: None, False),
    "lpips-weights": (cmd_lpips_weights, lambda fv: None, False),
}


def command_help(command: str) -> str:
    """`genimg COMMAND --help`: what the command does and the flags it takes."""
    run, define, takes_config = COMMANDS[command]
    fv = flags.FlagValues()
    define(fv)
    lines = [f"genimg {command}: {run.__doc__.strip()}", "", "flags:"]
    if takes_config:
        lines.append("  --config: config file path.py[:arg] (default: WORKDIR/config.json)")
        lines.append(
            "  --config.FIELD=VALUE: override any config field, e.g. --config.model.beta=4"
        )
    for name in fv:
        flag = fv[name]
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        lines.append(f"  --{name}: {flag.help}{default}")
    return "\n".join(lines)


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
    run, define, takes_config = COMMANDS[command]
    try:
        run(*_parse(argv[0], args, define, takes_config))
    except flags.UnrecognizedFlagError as e:
        fv = flags.FlagValues()
        define(fv)
        takes = ["--config", "--config.FIELD=VALUE"] if takes_config else []
        takes += [f"--{n}" for n in fv]
        return _fail(
            f"genimg {command} does not take --{e.flagname}; its flags: {', '.join(takes)} "
            f"(genimg {command} --help)"
        )
    except flags.Error as e:
        return _fail(f"bad flag: {e}")
    except GenimgError as e:
        return _fail(str(e), e.exit_code)
    return 0


def _fail(message: str, exit_code: int = 2) -> int:
    print(f"genimg: error: {message}", file=sys.stderr)
    return exit_code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
