"""The `genimg` command line fits habits: `--help` everywhere, each command parses its own
flags (a flag it does not take is refused by name), config overrides work on every command that
reads a config (also on a workdir's saved config), and `genimg sweep` applies its overrides to
every member."""

import json
import os
import subprocess
import sys

import pytest
from absl import flags
from conftest import REPO

from genimg_jax.cli import main

LR_QUICK = os.path.join(REPO, "configs", "vae_mnist.py:quick")


def test_genimg_train_help_exits_0_and_lists_the_train_flags():
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "genimg"), "train", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed = [line.split(":")[0].strip() for line in done.stdout.splitlines() if "  --" in line]
    assert listed == ["--config", "--config.FIELD=VALUE", "--workdir"]


@pytest.mark.parametrize("command", sorted(main.COMMANDS))
def test_every_command_lists_exactly_the_flags_it_takes(command, capsys):
    assert main.main(["genimg", command, "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"genimg {command}: ")
    _, define, takes_config = main.COMMANDS[command]
    own = flags.FlagValues()
    define(own)
    listed = {line.split(":")[0].strip() for line in out.splitlines() if line.startswith("  --")}
    expected = {f"--{n}" for n in own}
    expected |= {"--config", "--config.FIELD=VALUE"} if takes_config else set()
    assert listed == expected


@pytest.mark.parametrize("argv", [["--help"], ["help"], ["-h"]])
def test_genimg_help_prints_the_commands(argv, capsys):
    assert main.main(["genimg", *argv]) == 0
    assert "genimg train" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, refused",
    [
        (["train", "--config", LR_QUICK, "--workdir", "w", "--num", "5"], "--num"),
        (["prepare", "--data", "shapes", "--workdir", "w"], "--workdir"),
        (["sample", "--config", LR_QUICK, "--workdir", "w", "--member", "1"], "--member"),
    ],
)
def test_a_flag_the_command_does_not_take_is_refused_by_name(argv, refused, capsys):
    assert main.main(["genimg", *argv]) == 2
    err = capsys.readouterr().err
    assert f"genimg {argv[0]} does not take {refused}; its flags: " in err
    assert "Traceback" not in err and not os.path.exists("w")


def test_sweep_reads_its_file_from_config(tmp_path, capsys):
    # member 9 does not exist: the sweep file was read, and nothing trains
    for given in ([f"--config={LR_QUICK}"], ["--config", LR_QUICK]):
        argv = ["genimg", "sweep", *given, "--workdir", str(tmp_path), "--member", "9"]
        assert main.main(argv) == 2
        assert "--member 9 does not exist: the sweep has 2 members" in capsys.readouterr().err


def test_an_override_of_a_field_the_config_lacks_is_refused_before_anything_runs(tmp_path, capsys):
    """StyleGAN2's ψ is `--config.eval.truncation`; a VAE has no such field."""
    argv = ["genimg", "sample", f"--config={LR_QUICK}", "--workdir", str(tmp_path / "w")]
    assert main.main([*argv, "--config.eval.truncation=0.7"]) == 2
    err = capsys.readouterr().err
    assert "bad config override: no config field" in err and "truncation" in err
    assert len(err.strip().splitlines()) == 1 and not os.path.exists(tmp_path / "w")


def test_sweep_overrides_apply_to_every_member_and_are_recorded(tmp_path, capsys):
    workdir = tmp_path / "sweep"
    argv = ["genimg", "sweep", f"--config={LR_QUICK}", "--workdir", str(workdir)]
    assert main.main([*argv, "--config.train.steps=4", "--config.eval.every=4"]) == 0
    manifest = json.loads((workdir / "sweep.json").read_text())
    assert manifest["overrides"] == {"train.steps": 4, "eval.every": 4}
    assert len(manifest["members"]) == 2
    for member in manifest["members"]:
        summary = json.loads((workdir / member["name"] / "summary.json").read_text())
        assert summary["step"] == 4
    # a field the sweep itself varies cannot be overridden for every member
    varied = next(iter(manifest["members"][0]["overrides"]))
    assert main.main([*argv, f"--config.{varied}=0.5"]) == 2
    assert "overrides a field the sweep" in capsys.readouterr().err
