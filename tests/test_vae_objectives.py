"""β-VAE's relatives (the table in `steps.vae`): each regulariser against a NumPy
implementation of its paper's definition, each objective's loss against those, pmap equal to
jit for the whole-batch terms, FactorVAE's two networks trained, checkpointed and resumed, a
vectorized β-TCVAE sweep equal to its solo runs, and the study's grid."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from conftest import REPO, load_config, tree_equal

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core import collectives, losses
from genimg_jax.core import state as state_lib
from genimg_jax.families.vae.factor_vae import FactorVAEState
from genimg_jax.families.vae.step import OBJECTIVES
from genimg_jax.runtime import parallel
from genimg_jax.sweeps import run as sweep_run
from genimg_jax.sweeps import spec as sweep
from genimg_jax.training import loop as trainer
from genimg_jax.training.checkpoint import Checkpoints

STUDY = os.path.join(REPO, "configs", "disentanglement_study.py")


def _codes(seed=0, b=16, z=4):
    rng = np.random.default_rng(seed)
    mean, logvar = rng.normal(size=(b, z)), rng.normal(scale=0.5, size=(b, z))
    return mean, logvar, mean + np.exp(0.5 * logvar) * rng.normal(size=(b, z))


def _study(objective: str, **model) -> "config_lib.ml_collections.ConfigDict":
    config = load_config("disentanglement_study")
    config.model.objective = objective
    config.parallel.num_devices = 1
    for key, value in model.items():
        config.model[key] = value
    return config


def _np_dip_penalty(cov, lambda_od, lambda_d):
    z = len(cov)
    off = sum(cov[i, j] ** 2 for i in range(z) for j in range(z) if i != j)
    return lambda_od * off + lambda_d * sum((cov[i, i] - 1) ** 2 for i in range(z))


def _np_total_correlation(z, mean, logvar):
    """Minibatch-weighted sampling written out: log q(z_i) = log Σ_k Π_d N(z_id; μ_kd, σ_kd²)
    and log Π_d q(z_id) = Σ_d log Σ_k N(z_id; μ_kd, σ_kd²), without the log(N·B) constants."""
    std = np.exp(0.5 * logvar)
    tc = []
    for i in range(len(z)):
        dens = scipy.stats.norm.logpdf(z[i][None, :], mean, std)  # [k, d]
        joint = scipy.special.logsumexp(dens.sum(axis=1))
        product = sum(scipy.special.logsumexp(dens[:, d]) for d in range(z.shape[1]))
        tc.append(joint - product)
    return np.mean(tc)


def _np_regulariser(objective, hp, step, kl, mean, logvar, z, disc_logits=None):
    if objective == "beta_vae":
        return hp["beta"] * kl.mean()
    if objective == "annealed_vae":
        capacity = hp["c_max"] * min(1.0, step / hp["c_steps"])
        return hp["gamma"] * abs(kl.mean() - capacity)
    if objective.startswith("dip_vae"):
        cov = np.cov(mean.T, bias=True)
        if objective == "dip_vae_ii":
            cov = cov + np.diag(np.exp(logvar).mean(axis=0))
        return kl.mean() + _np_dip_penalty(cov, hp["lambda_od"], hp["lambda_d"])
    if objective == "beta_tcvae":
        return kl.mean() + (hp["beta"] - 1) * _np_total_correlation(z, mean, logvar)
    return kl.mean() + hp["gamma"] * np.mean(disc_logits[:, 0] - disc_logits[:, 1])


def test_linear_ramp_rises_from_zero_to_one_and_is_one_without_steps():
    ramp = [float(losses.linear_ramp(s, n)) for s, n in [(0, 10), (5, 10), (20, 10), (3, 0)]]
    assert ramp == [0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("variant", ["i", "ii"])
def test_dip_covariance_and_penalty_match_numpy(variant):
    mean, logvar, _ = _codes()
    expected = np.cov(mean.T, bias=True)
    if variant == "ii":
        expected += np.diag(np.exp(logvar).mean(axis=0))
    cov = losses.dip_covariance(jnp.asarray(mean), jnp.asarray(logvar), variant)
    np.testing.assert_allclose(cov, expected, rtol=1e-5, atol=1e-6)
    penalty = losses.dip_penalty(cov, 2.0, 20.0)
    np.testing.assert_allclose(penalty, _np_dip_penalty(expected, 2.0, 20.0), rtol=1e-5)


def test_total_correlation_matches_minibatch_weighted_sampling_written_out():
    mean, logvar, z = _codes(1)
    tc = losses.total_correlation(*(jnp.asarray(a, jnp.float32) for a in (z, mean, logvar)))
    np.testing.assert_allclose(tc, _np_total_correlation(z, mean, logvar), rtol=1e-4)


def test_total_correlation_grows_when_the_codes_are_dependent():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(256, 1))
    small = np.full((256, 2), -6.0)  # tight posteriors
    tied = np.concatenate([u, u], axis=1)  # z_1 = z_2
    free = rng.normal(size=(256, 2))
    tc = lambda m: float(losses.total_correlation(*(jnp.asarray(a) for a in (m, m, small))))
    assert tc(tied) > tc(free) + 1.0


def test_permute_dims_shuffles_each_dimension_with_its_own_permutation():
    z = jnp.arange(64 * 3, dtype=jnp.float32).reshape(64, 3)
    p = np.asarray(losses.permute_dims(z, jax.random.key(0)))
    for j in range(3):
        assert sorted(p[:, j]) == sorted(np.asarray(z[:, j]))  # a permutation of its column
    orders = [tuple(np.argsort(p[:, j])) for j in range(3)]
    assert len(set(orders)) == 3 and orders[0] != tuple(range(64))


def test_factor_vae_terms_match_numpy():
    rng = np.random.default_rng(3)
    logits, permuted = rng.normal(size=(16, 2)), rng.normal(size=(16, 2))
    tc = losses.factor_vae_tc(jnp.asarray(logits))
    np.testing.assert_allclose(tc, np.mean(logits[:, 0] - logits[:, 1]), rtol=1e-5)
    loss = losses.factor_vae_discriminator_loss(jnp.asarray(logits), jnp.asarray(permuted))
    expected = -0.5 * (
        scipy.special.log_softmax(logits, axis=1)[:, 0].mean()
        + scipy.special.log_softmax(permuted, axis=1)[:, 1].mean()
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def _stepped(objective: str, axis_name=None):
    config = _study(objective, kl_warmup_steps=4, c_steps=6, beta=3.0, gamma=7.0)
    state = families.create_state(config, jax.random.key(0))
    fam = families.of(config)
    return config, state, fam.make_train_step(config, axis_name)


def _at_step(state, step: int):
    if isinstance(state, FactorVAEState):
        return state.replace(vae=state.vae.replace(step=jnp.int32(step)))
    return state.replace(step=jnp.int32(step))


@jax.jit
def _forward(vae, x, eps):
    """The VAE's (logits, mean, logvar) on x with noise eps, compiled (not op by op)."""
    return vae.apply_fn({"params": vae.params}, x, eps)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objectives_loss_is_the_reconstruction_plus_its_warmed_up_regulariser(objective):
    config, state, step_fn = _stepped(objective)
    state = _at_step(state, 2)  # warm-up weight 2/4, AnnealedVAE capacity C_max·2/6
    x = jax.random.uniform(jax.random.key(1), (16, 32, 32, 1))
    rng = jax.random.key(2)
    _, metrics = jax.jit(step_fn)(state, {"image": x}, rng)

    eps = collectives.normal_rows(rng, 16, (config.model.latent_dim,), None)
    vae = state.vae if isinstance(state, FactorVAEState) else state
    logits, mean, logvar = _forward(vae, x, eps)
    mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    z = mean + np.exp(0.5 * logvar) * np.asarray(eps, np.float64)
    recon = float(jnp.mean(losses.bernoulli_reconstruction(x, logits)))
    kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar, axis=1)
    disc_logits = None
    if objective == "factor_vae":
        disc_logits = np.asarray(state.disc.apply_fn({"params": state.disc.params}, z))
    hp = {k: float(v) for k, v in vae.hparams.items()}
    expected = recon + 0.5 * _np_regulariser(objective, hp, 2, kl, mean, logvar, z, disc_logits)
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(metrics["kl"]) == pytest.approx(kl.mean(), rel=1e-4)


# one of each kind of whole-batch term: a batch mean (|KL − C|), a covariance, a discriminator
@pytest.mark.parametrize("objective", ["annealed_vae", "dip_vae_ii", "factor_vae"])
def test_whole_batch_terms_under_pmap_equal_jit_on_the_global_batch(objective):
    config, state, jit_step = _stepped(objective)
    pmap_step = families.of(config).make_train_step(config, parallel.AXIS)  # the same state
    state = _at_step(state, 3)
    x = jax.random.uniform(jax.random.key(1), (16, 32, 32, 1))
    rng = jax.random.key(2)
    expected, expected_metrics = jax.jit(jit_step)(state, {"image": x}, rng)

    mesh = parallel.make_mesh(4)
    devices = parallel.local_devices(mesh)
    replicated = parallel.pmap_replicate(jax.tree.map(jnp.asarray, state), mesh)
    batch = {"image": x.reshape(4, 4, *x.shape[1:])}
    step = jax.pmap(pmap_step, axis_name=parallel.AXIS, in_axes=(0, 0, None), devices=devices)
    new, metrics = step(replicated, batch, rng)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(new), strict=True):
        np.testing.assert_allclose(np.asarray(b)[0], a, rtol=2e-4, atol=2e-6)
    for key, value in expected_metrics.items():
        np.testing.assert_allclose(np.asarray(metrics[key])[0], value, rtol=1e-4, atol=1e-6)


def test_factor_vae_trains_both_networks_checkpoints_them_and_resumes_bitwise(tmp_path):
    config = _study("factor_vae")
    # the whole run saves and draws grids at its end only; the resumed one stops at step 6
    config.train.checkpoint_every = config.eval.every = config.train.steps
    full = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path / "full")))
    fresh = families.create_state(config, state_lib.run_keys(config.seed)["init"])
    assert isinstance(full, FactorVAEState) and int(full.disc.step) == 12
    assert not tree_equal(full.disc.params, jax.device_get(fresh.disc.params))
    restored = Checkpoints(str(tmp_path / "full"), 3).restore(
        families.abstract_initial_state(config, parallel.make_mesh(1))
    )
    assert tree_equal(jax.device_get(restored), full)

    half = config.copy_and_resolve_references()
    half.train.steps = 6  # its last step is saved
    trainer.train_and_evaluate(half, str(tmp_path / "resumed"))
    resumed = trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert tree_equal(jax.device_get(resumed), full)
    with open(tmp_path / "full" / "metrics.jsonl") as f:
        row = json.loads(f.readlines()[-1])
    assert {"tc", "disc_loss", "disc_accuracy"} <= set(row)


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_a_vectorized_sweep_over_beta_tcvaes_betas_equals_the_solo_runs(tmp_path):
    configs = []
    for beta in [1.0, 4.0, 10.0]:
        configs.append(_study("beta_tcvae", beta=beta))
        train = configs[-1].train
        train.steps = train.checkpoint_every = configs[-1].eval.every = 6
        train.log_every = 2
    solo = [str(tmp_path / f"solo{i}") for i in range(3)]
    together = [str(tmp_path / f"vmap{i}") for i in range(3)]
    for config, workdir in zip(configs, solo, strict=True):
        trainer.train([config], [workdir])
    trainer.train(configs, together, "vmap")
    for a, b in zip(solo, together, strict=True):
        ra, rb = _rows(a), _rows(b)
        assert [r["step"] for r in ra] == [r["step"] for r in rb]
        for x, y in zip(ra, rb, strict=True):
            for key in ("loss", "recon", "kl", "tc", "grad_norm"):
                assert y[key] == pytest.approx(x[key], rel=1e-3, abs=1e-5), (a, key)
    losses_at_end = [_rows(b)[-1]["loss"] for b in together]
    assert len(set(losses_at_end)) == 3  # each member trained with its own β


def test_the_study_grid_is_the_papers():
    base, members = sweep.load(STUDY)
    assert len(members) == 6 * 6 * 50
    by_method: dict[str, set] = {}
    for m in members:
        o = m.overrides
        key = [
            k for k in o if k not in ("model.objective", "seed", "model.gamma", "model.lambda_d")
        ]
        field = key[0] if key else "model.gamma"
        by_method.setdefault(o["model.objective"], set()).add((field, o[field]))
        if o["model.objective"] == "dip_vae_i":
            assert o["model.lambda_d"] == 10 * o["model.lambda_od"]
        if o["model.objective"] == "dip_vae_ii":
            assert o["model.lambda_d"] == o["model.lambda_od"]
        if o["model.objective"] == "annealed_vae":
            assert o["model.gamma"] == 1000.0
    assert {m: sorted(v for _, v in vs) for m, vs in by_method.items()} == {
        "beta_vae": [1, 2, 4, 6, 8, 16],
        "annealed_vae": [5, 10, 25, 50, 75, 100],
        "factor_vae": [10, 20, 30, 40, 50, 100],
        "dip_vae_i": [1, 2, 5, 10, 20, 50],
        "dip_vae_ii": [1, 2, 5, 10, 20, 50],
        "beta_tcvae": [1, 2, 4, 6, 8, 10],
    }
    t = base.train
    assert (t.steps, t.batch_size, t.lr, base.model.latent_dim) == (300_000, 64, 1e-4, 10)
    assert base.train.reconstruction == "bernoulli"
    for name in ("small", "quick"):
        config_lib.validate(config_lib.from_file(STUDY, name))


def test_sweep_vectorize_trains_each_method_as_its_own_program(tmp_path):
    one = {"parallel.num_devices": 1, "train.checkpoint_every": 12}  # one device, one save
    ran = sweep_run.run(f"{STUDY}:quick", str(tmp_path), vectorize=True, overrides=one)
    assert [m.overrides["model.objective"] for m in ran] == ["beta_tcvae"] * 2 + ["factor_vae"] * 2
    for m in ran:
        rows = _rows(tmp_path / m.name)
        assert rows[-1]["step"] == 12 and "tc" in rows[-1]
        assert ("disc_loss" in rows[-1]) == (m.overrides["model.objective"] == "factor_vae")


def test_a_study_member_scores_every_study_metric_on_the_shapes_process_at_its_size():
    """A 32-pixel member is scored on the generative process's 64-pixel images fitted to its
    size; with eval.disentanglement_scale > 0 it reports all of the study's scores."""
    from genimg_jax.families.vae import ground_truth, scoring

    config = _study("beta_tcvae")
    config.eval.disentanglement_scale = 0.005  # the fewest samples each score takes
    config_lib.validate(config)
    state = families.initial_state(config, parallel.make_mesh(1))
    truth = ground_truth.for_data(config.data)
    scores = scoring.disentanglement_scores(state, config, truth, num=64, seed=0)
    expected = set(families.of(config).score_modes(config.data)) - {
        "neg_elbo",
        "iwae",
        "neg_elbo_bits_per_dim",
        "iwae_bits_per_dim",
    }
    assert set(scores) == expected
    assert all(0.0 <= v <= 1.0 for v in scores.values()), scores
    # That the study's scores are a pure function of the seed is tested on a fixed
    # representation (test_disentanglement_metrics); the member's is a compiled program.
