"""The `genimg` command line fits habits: `--help` everywhere, a flag that a command does not take
is refused by name, and `genimg sweep --config FILE` works like `--sweep FILE`."""

import os
import subprocess
import sys

import pytest
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
    assert listed == ["--config", "--workdir", "--config.FIELD=VALUE"]


@pytest.mark.parametrize("command", sorted(main.COMMANDS))
def test_every_command_lists_exactly_the_flags_it_takes(command, capsys):
    assert main.main(["genimg", command, "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"genimg {command}: ")
    for name in main.FLAGS:
        if "." not in name and name in {n for c in main.TAKES.values() for n in c}:
            assert (f"  --{name}: " in out) == (name in main.TAKES[command]), name


@pytest.mark.parametrize("argv", [["--help"], ["help"], ["-h"]])
def test_genimg_help_prints_the_commands(argv, capsys):
    assert main.main(["genimg", *argv]) == 0
    assert "genimg train" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, refused",
    [
        (["train", "--config", LR_QUICK, "--workdir", "w", "--num", "5"], "--num"),
        (["prepare", "--data", "shapes", "--workdir", "w"], "--workdir"),
        (["sample", "--workdir", "w", "--member", "1", "--iwae_k", "3"], "--iwae_k, --member"),
    ],
)
def test_a_flag_the_command_does_not_take_is_refused_by_name(argv, refused, tmp_path, capsys):
    assert main.main(["genimg", *argv]) == 2
    err = capsys.readouterr().err
    assert f"genimg {argv[0]} does not take {refused}; its flags: " in err
    assert "Traceback" not in err and not os.path.exists("w")


@pytest.mark.parametrize("flag", ["--config", "--sweep"])
def test_sweep_takes_its_file_as_config_or_sweep(flag, tmp_path, capsys):
    # member 9 does not exist: the sweep file was read, and nothing trains
    argv = ["genimg", "sweep", f"{flag}={LR_QUICK}", "--workdir", str(tmp_path), "--member", "9"]
    assert main.main(argv) == 2
    assert "--member 9 does not exist: the sweep has 2 members" in capsys.readouterr().err
    argv = ["genimg", "sweep", flag, LR_QUICK, "--workdir", str(tmp_path), "--member", "9"]
    assert main.main(argv) == 2


def test_truncation_of_a_family_without_w_is_refused_before_anything_runs(tmp_path, capsys):
    argv = ["genimg", "sample", f"--config={LR_QUICK}", "--workdir", str(tmp_path / "w")]
    assert main.main([*argv, "--truncation", "0.7"]) == 2
    err = capsys.readouterr().err
    assert "--truncation: model.family='conv_vae' has no w to truncate" in err
    assert not os.path.exists(tmp_path / "w")
