"""Evaluation on real (short) runs: scores logged every `eval.every` steps with the best checkpoint
kept, `genimg eval` of the latest or best checkpoint, `genimg train-classifier`, the cached
feature nets and reference features, and the Inception feature net from a local weights file."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import REPO, load_config

from genimg_jax import families
from genimg_jax.cli import eval as evaluate
from genimg_jax.cli import latents as latents_cli
from genimg_jax.cli import main
from genimg_jax.config import validate
from genimg_jax.core.errors import ConfigError
from genimg_jax.features import feature_nets, reference
from genimg_jax.training import loop as trainer


def scored_config(name: str, **eval_fields):
    config = load_config(name)
    config.parallel.num_devices = 1
    config.eval.scores = True
    config.eval.every = 4  # evaluations at 4, 8, 12
    config.train.checkpoint_every = 4
    # The domain classifier of 100 steps (the autoencoders' default, shared through the data
    # dir's cache), not 600: how scores are logged and kept is under test, not their values.
    config.eval.classifier_steps = 100
    for field, value in eval_fields.items():
        config.eval[field] = value
    return config


def read_rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module", params=["dcgan_mnist", "vae_mnist"])
def trained(request, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp(request.param))
    best = {"dcgan_mnist": "recall", "vae_mnist": "neg_elbo"}[request.param]
    config = scored_config(request.param, best_metric=best)
    if request.param == "vae_mnist":  # the IWAE bound's decodes are its scores' cost
        config.eval.examples = 16
    trainer.train_and_evaluate(config, workdir)
    return request.param, config, workdir


def test_scores_are_logged_at_each_evaluation_and_the_best_checkpoint_is_kept(trained):
    name, config, workdir = trained
    rows = [r for r in read_rows(workdir) if any(k.startswith("eval/") for k in r)]
    assert [r["step"] for r in rows] == [4, 8, 12]
    metric, mode = config.eval.best_metric, ("max" if name == "dcgan_mnist" else "min")
    values = [r[f"eval/{metric}"] for r in rows]
    best_step = rows[int(np.argmax(values) if mode == "max" else np.argmin(values))]["step"]
    if len(set(values)) < len(values):  # ties keep the earliest, as `is_better` is strict
        best_step = rows[values.index(max(values) if mode == "max" else min(values))]["step"]
    assert os.listdir(os.path.join(workdir, "checkpoints_best")) == [str(best_step)]
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["eval"]["best_step"] == best_step
    assert summary["eval"]["best_value"] == pytest.approx(
        min(values) if mode == "min" else max(values)
    )
    for row in rows:  # eval_<step>.json holds the same scores as the log
        with open(os.path.join(workdir, f"eval_{row['step']:06d}.json")) as f:
            saved = json.load(f)
        assert {f"eval/{k}": v for k, v in saved.items() if k != "step"} == {
            k: v for k, v in row.items() if k != "step"
        }


@pytest.mark.parametrize("trained", ["dcgan_mnist"], indirect=True)  # a GAN score
def test_eval_compares_with_the_reference_split_asked_for(trained, tmp_path, capsys):
    """`--config.eval.reference_split=train` scores against the first training images (cached apart from
    the test images' features), with as many of them as `--config.eval.examples` asks."""
    _, _, trained_dir = trained
    workdir = str(tmp_path / "copy")  # eval writes eval_<step>.json: not into the shared run
    shutil.copytree(trained_dir, workdir)
    scores = {}
    for split in ("test", "train"):
        argv = ["genimg", "eval", f"--workdir={workdir}", "--config.eval.examples=40"]
        assert main.main([*argv, f"--config.eval.reference_split={split}"]) == 0
        scores[split] = json.loads(capsys.readouterr().out)
        assert scores[split]["num_reference"] == 40 and scores[split]["num_samples"] == 40
    assert scores["train"]["fid"] != scores["test"]["fid"]
    cached = os.listdir(os.path.join(os.environ["TFDS_DATA_DIR"], "genimg_reference"))
    assert any("_train_" in f and "_n40_" in f for f in cached), cached


def test_eval_of_the_best_checkpoint_reproduces_the_logged_score(trained):
    """A second code path: restoring `checkpoints_best/` in `genimg eval` and scoring it again
    gives the number the training loop logged for that step."""
    _, config, workdir = trained
    scores = evaluate.evaluate_workdir(config, workdir, "best")
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)["eval"]
    assert scores["step"] == summary["best_step"]
    assert scores[config.eval.best_metric] == pytest.approx(summary["best_value"], rel=1e-5)
    latest = evaluate.evaluate_workdir(config, workdir)
    assert latest["step"] == 12
    with open(os.path.join(workdir, "eval_000012.json")) as f:
        assert json.load(f) == pytest.approx(latest, rel=1e-5)


def test_scores_are_sane(trained):
    name, _, workdir = trained
    with open(os.path.join(workdir, "eval_000012.json")) as f:
        scores = json.load(f)
    assert all(np.isfinite(v) for v in scores.values())
    if name == "dcgan_mnist":
        # the feature net is a trained classifier (0.77 after its 100 steps; chance is 0.1)
        assert scores["classifier_test_accuracy"] > 0.5
        assert scores["fid"] > 0 and 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
        assert 1 <= scores["inception_score"] <= 10 and scores["classes_hit"] <= 10
        assert scores["kid_std"] > 0  # subsets differ (half the samples each)
    else:
        assert scores["iwae"] <= scores["neg_elbo"] + 1e-3 * abs(scores["neg_elbo"])
        assert scores["iwae_bits_per_dim"] == pytest.approx(
            scores["iwae"] / (28 * 28 * np.log(2)), rel=1e-5
        )


@pytest.mark.parametrize("trained", ["dcgan_mnist"], indirect=True)
def test_a_resumed_run_logs_the_same_scores_and_keeps_the_same_best(trained, tmp_path):
    """The module's uninterrupted run against one stopped at step 8 and resumed."""
    _, config, whole = trained
    config = config.copy_and_resolve_references()
    parts = str(tmp_path / "parts")
    config.train.steps = 8
    trainer.train_and_evaluate(config, parts)
    config.train.steps = 12
    trainer.train_and_evaluate(config, parts)
    without_rate = [
        [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in read_rows(w)]
        for w in (whole, parts)
    ]
    assert without_rate[0] == without_rate[1]  # training metrics and scores, row by row
    evals = [[r for r in read_rows(w) if "eval/fid" in r] for w in (whole, parts)]
    assert evals[0] == evals[1] and len(evals[0]) == 3
    assert os.listdir(os.path.join(whole, "checkpoints_best")) == os.listdir(
        os.path.join(parts, "checkpoints_best")
    )


@pytest.mark.parametrize("trained", ["dcgan_mnist"], indirect=True)
def test_a_resume_forgets_best_saves_after_its_step(trained, tmp_path):
    """Best saves made after the restored checkpoint belong to a discarded future."""
    _, config, trained_dir = trained
    workdir = str(tmp_path / "w")  # a copy of the module's finished run: it is not changed
    shutil.copytree(trained_dir, workdir)
    best_dir = os.path.join(workdir, "checkpoints_best")
    (kept,) = os.listdir(best_dir)
    os.rename(os.path.join(best_dir, kept), os.path.join(best_dir, "100"))  # a future best
    trainer.train_and_evaluate(config, workdir)  # finished: resumes at 12, nothing to do
    assert os.listdir(best_dir) == []


def test_cli_eval_and_sample_take_the_best_checkpoint(trained, capsys):
    _, _, workdir = trained
    out = os.path.join(workdir, "best.png")
    argv = ["genimg", "sample", f"--workdir={workdir}", "--checkpoint=best", f"--out={out}"]
    assert main.main(argv) == 0 and os.path.exists(out)
    assert capsys.readouterr().out.strip() == out
    argv = [
        "genimg",
        "eval",
        f"--workdir={workdir}",
        "--checkpoint=best",
        "--config.eval.examples=8",  # not the run's own eval.examples (64 or 16)
    ]
    assert main.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["num_samples" if "num_samples" in printed else "num_examples"] == 8


def test_a_vae_encodes_to_its_posterior_means_and_decodes_them_and_a_gan_cannot(
    trained, tmp_path, capsys
):
    name, config, workdir = trained
    codes, grid = str(tmp_path / "z.npz"), str(tmp_path / "r.png")
    encode = ["genimg", "encode", f"--workdir={workdir}", "--num=5", f"--out={codes}"]
    if name == "dcgan_mnist":
        assert main.main(encode) == 2
        assert "has no encoder" in capsys.readouterr().err
        nowhere = str(tmp_path / "no_checkpoint_here")  # refused before anything is read
        with pytest.raises(ConfigError, match="has no encoder"):
            latents_cli.encode(config, nowhere, codes)
        with pytest.raises(ConfigError, match="has no decoder"):
            latents_cli.decode(config, nowhere, codes)
        return
    assert main.main(encode) == 0
    with np.load(codes) as f:
        latents, labels = f["latents"], f["labels"]
    assert latents.shape == (5, config.model.latent_dim) and labels.shape == (5,)
    decoded = str(tmp_path / "x.npz")
    argv = ["genimg", "decode", f"--workdir={workdir}", f"--latents={codes}", "--format=npz"]
    assert main.main([*argv, f"--out={decoded}"]) == 0
    assert np.load(decoded)["images"].shape == (5, 28, 28, 1)
    assert (
        main.main(["genimg", "reconstruct", f"--workdir={workdir}", "--num=4", f"--out={grid}"])
        == 0
    )
    assert os.path.exists(grid)


def test_eval_without_a_best_checkpoint_says_how_to_get_one(tmp_path, capsys):
    config = load_config("vae_mnist")
    config.parallel.num_devices = 1
    workdir = str(tmp_path / "w")
    trainer.train_and_evaluate(config, workdir)  # :quick does not score
    assert main.main(["genimg", "eval", f"--workdir={workdir}", "--checkpoint=best"]) == 1
    err = capsys.readouterr().err
    assert "checkpoints_best" in err and "eval.scores=True" in err


# --------------------------------------------------------------------------------------------
# Feature nets and the reference cache


def test_train_classifier_command_writes_the_cached_classifier(tmp_path, capsys):
    argv = [
        "genimg",
        "train-classifier",
        f"--config={os.path.join(REPO, 'configs', 'dcgan_mnist.py')}:quick",
        "--config.eval.classifier_steps=40",
    ]
    assert main.main(argv) == 0
    out = capsys.readouterr().out
    config = load_config("dcgan_mnist")
    config.eval.classifier_steps = 40
    path = feature_nets.classifier_path(config)
    assert path in out and os.path.exists(path)
    accuracy = float(out.split("test accuracy ")[1].split(",")[0])
    net = feature_nets.for_config(config)  # reads the file: same accuracy, no retraining
    assert net.facts["classifier_test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    mtime = os.path.getmtime(path)
    feature_nets.for_config(config)
    assert os.path.getmtime(path) == mtime


def test_reference_features_are_cached_per_feature_net_and_rebuilt_when_damaged():
    config = scored_config("dcgan_mnist")  # its domain classifier, as the module's runs'
    net = feature_nets.for_config(config)
    path = reference.cache_path(config, net, 50)
    if os.path.exists(path):
        os.remove(path)
    first = reference.reference_features(config, net, 50)
    images, _ = feature_nets.load_images(config, config.data.eval_split, 50)
    np.testing.assert_allclose(first, net.extract(images)[0], rtol=1e-6)  # same as computing
    assert os.path.exists(path)
    calls = []
    counting = net._replace(extract=lambda x: calls.append(1) or net.extract(x))
    np.testing.assert_array_equal(reference.reference_features(config, counting, 50), first)
    assert calls == []  # read from the cache
    other = net._replace(fingerprint="0" * 64)  # other weights: another file
    assert reference.cache_path(config, other, 50) != path
    with open(path, "wb") as f:
        f.write(b"not an npz")
    rebuilt = reference.reference_features(config, counting, 50)
    assert calls == [1]
    np.testing.assert_array_equal(rebuilt, first)


@pytest.mark.parametrize("trained", ["dcgan_mnist"], indirect=True)
def test_inception_feature_net_scores_from_a_local_weights_file(trained, tmp_path):
    """FID on InceptionV3 features end to end, with a weights file the test writes (random
    weights: the path, not the numbers, is under test; the network itself is checked against
    PyTorch in test_inception.py), of the module's trained DCGAN."""
    from test_inception import _random_state

    _, config, trained_dir = trained
    weights = str(tmp_path / "inception.npz")
    np.savez(weights, **_random_state())
    config = config.copy_and_resolve_references()
    config.eval.feature_net = "inception"
    config.eval.inception_weights = weights
    config.eval.examples = 4
    workdir = str(tmp_path / "w")  # eval writes eval_<step>.json: not into the shared run
    shutil.copytree(trained_dir, workdir)
    scores = evaluate.evaluate_workdir(config, workdir)
    assert scores["num_samples"] == 4 and np.isfinite(scores["fid"])
    assert "classifier_test_accuracy" not in scores and "classes_hit" not in scores
    net = feature_nets.for_config(config)
    assert net.name == "inception"
    assert os.path.exists(reference.cache_path(config, net, 4))


def test_inception_without_weights_is_a_config_error():
    config = load_config("dcgan_mnist")
    config.eval.scores = True
    config.eval.feature_net = "inception"
    with pytest.raises(ConfigError, match=r"eval\.inception_weights.*docs/inception_weights"):
        validate(config)


@pytest.mark.parametrize(
    ("name", "metric"), [("dcgan_mnist", "neg_elbo"), ("vae_mnist", "fid"), ("vae_mnist", "mig")]
)
def test_a_best_metric_the_run_does_not_report_is_a_config_error(name, metric):
    config = load_config(name)
    config.eval.best_metric = metric
    with pytest.raises(ConfigError, match="eval.best_metric"):
        validate(config)


def test_mig_is_a_valid_best_metric_on_64px_shapes():
    config = load_config("beta_vae_shapes")
    config.data.image_size = 64
    config.eval.best_metric = "mig"
    validate(config)
    assert families.of(config).score_modes(config.data)["mig"] == "max"
