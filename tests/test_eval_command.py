"""`genimg eval` on real (short) runs: GAN scores on a domain classifier's features, VAE
likelihood bounds; the scores are written next to the checkpoint."""

import json
import os

import numpy as np
import pytest
from conftest import load_config

from genimg_jax import trainer
from genimg_jax.evaluate import run as evaluate


@pytest.fixture(scope="module", params=["dcgan_mnist", "vae_mnist"])
def trained(request, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp(request.param))
    config = load_config(request.param)
    config.parallel.num_devices = 1
    trainer.train_and_evaluate(config, workdir)
    return request.param, config, workdir


def test_eval_scores_the_latest_checkpoint(trained):
    name, config, workdir = trained
    scores = evaluate.evaluate_workdir(config, workdir, num=64, iwae_k=20)
    with open(os.path.join(workdir, "eval_000012.json")) as f:
        assert json.load(f) == scores
    assert scores["step"] == 12 and all(np.isfinite(v) for v in scores.values())
    if name == "dcgan_mnist":
        assert scores["classifier_test_accuracy"] > 0.9  # the feature net is a real classifier
        assert scores["fid"] > 0 and 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
        assert 1 <= scores["inception_score"] <= 10 and scores["classes_hit"] <= 10
    else:
        assert scores["iwae"] <= scores["neg_elbo"] + 1e-3 * abs(scores["neg_elbo"])
        assert scores["iwae_bits_per_dim"] == pytest.approx(
            scores["iwae"] / (28 * 28 * np.log(2)), rel=1e-5
        )
