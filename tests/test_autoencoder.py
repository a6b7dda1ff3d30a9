"""The autoencoder families (VQ-VAE, VQGAN, the KL autoencoder): the quantiser, the EMA
codebook and its restarts, the losses, the adaptive weight and the reconstruction metrics against
NumPy definitions or finite differences; the step under pmap equal to jit; a VQGAN trained,
resumed bitwise, its codes written and decoded back to its reconstructions bitwise; a vectorized
sweep over KL weights equal to its solo runs; the shapes VQGAN scored without a feature net."""

import functools
import json
import os

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_config, resume_copy, tree_equal

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.cli import latents, main, sample
from genimg_jax.core import state as state_lib
from genimg_jax.core.errors import ConfigError
from genimg_jax.families.autoencoder import quantizer
from genimg_jax.families.autoencoder import step as ae_step
from genimg_jax.features import perceptual
from genimg_jax.metrics import reconstruction
from genimg_jax.training import loop as trainer
from genimg_jax.training import outputs

EPS32 = float(np.finfo(np.float32).eps)


def _np_nearest(z, codebook):
    d = ((z[:, None, :].astype(np.float64) - codebook[None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(1)


def test_nearest_codes_and_the_vq_loss_terms_match_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3, 3, 5)).astype(np.float32)
    codebook = rng.normal(size=(7, 5)).astype(np.float32)
    q = quantizer.quantize(jnp.asarray(z), jnp.asarray(codebook))
    codes = _np_nearest(z.reshape(-1, 5), codebook)
    np.testing.assert_array_equal(np.asarray(q.codes).reshape(-1), codes)
    e = codebook[codes].reshape(z.shape)
    np.testing.assert_allclose(q.z_q, e, rtol=1e-6, atol=1e-6)  # the forward value is e
    np.testing.assert_allclose(q.codebook_loss, np.mean((z - e) ** 2), rtol=1e-5)
    np.testing.assert_allclose(q.commitment_loss, np.mean((z - e) ** 2), rtol=1e-5)


def test_the_straight_through_estimator_hands_the_decoders_gradient_to_the_encoder_alone():
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(1, 2, 2, 3)), jnp.float32)
    codebook = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(1, 2, 2, 3)), jnp.float32)
    dz, de = jax.grad(lambda a, b: jnp.sum(quantizer.quantize(a, b).z_q * w), (0, 1))(z, codebook)
    np.testing.assert_allclose(dz, w, rtol=1e-6)
    np.testing.assert_array_equal(de, 0.0)  # the codebook learns by its own loss or EMAs
    de = jax.grad(lambda b: quantizer.quantize(z, b).codebook_loss)(codebook)
    codes = _np_nearest(np.asarray(z).reshape(-1, 3), np.asarray(codebook))
    expected = np.zeros((4, 3))
    for i, k in enumerate(codes):  # d/de_k mean((z − e)²) over the 12 elements
        expected[k] += 2 * (np.asarray(codebook)[k] - np.asarray(z).reshape(-1, 3)[i]) / 12
    np.testing.assert_allclose(de, expected, rtol=1e-5, atol=1e-7)


def test_the_ema_codebook_and_the_restarts_follow_their_definitions():
    rng = np.random.default_rng(2)
    k, d, n, decay, threshold, step = 6, 3, 40, 0.9, 0.5, 3
    z = rng.normal(size=(n, d)).astype(np.float32)
    codes = rng.choice([0, 1, 2], size=n)  # codes 3, 4, 5 get no latent this step
    count = np.array([2.0, 1.0, 3.0, 0.1, 0.01, 0.0], np.float32)
    total = rng.normal(size=(k, d)).astype(np.float32)
    codebook = rng.normal(size=(k, d)).astype(np.float32)
    counts = np.bincount(codes, minlength=k).astype(np.float32)
    sums = np.stack([z[codes == j].sum(0) for j in range(k)])
    key = jax.random.key(3)
    new, stats, restarted = quantizer.update(
        jnp.asarray(codebook),
        quantizer.CodebookStats(jnp.asarray(count), jnp.asarray(total)),
        jnp.asarray(counts),
        jnp.asarray(sums),
        jnp.asarray(z),
        key,
        jnp.int32(step),
        jnp.float32(decay),
        jnp.float32(threshold),
    )
    ema_count = decay * count + (1 - decay) * counts
    ema_total = decay * total + (1 - decay) * sums
    smoothed = (ema_count + 1e-5) / (ema_count.sum() + k * 1e-5) * ema_count.sum()
    expected = ema_total / smoothed[:, None]
    dead = ema_count / (1 - decay ** (step + 1)) < threshold
    assert dead.tolist() == [False, False, False, True, True, True] and int(restarted) == 3
    picks = np.asarray(jax.random.randint(key, (k,), 0, n))
    expected[dead] = z[picks[dead]]
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)
    revived = threshold * (1 - decay ** (step + 1))
    np.testing.assert_allclose(stats.count, np.where(dead, revived, ema_count), rtol=1e-6)
    np.testing.assert_allclose(stats.total[dead], z[picks[dead]] * revived, rtol=1e-5)


def test_perplexity_is_the_number_of_equally_used_codes():
    assert float(quantizer.perplexity(jnp.array([5.0, 5.0, 5.0, 5.0]))) == pytest.approx(4.0)
    assert float(quantizer.perplexity(jnp.array([0.0, 9.0, 0.0]))) == pytest.approx(1.0)


def _np_ssim(x, y):
    """Wang et al.'s SSIM written out: every 11×11 window inside the image, Gaussian weights."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            values.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return np.mean(values)


def test_psnr_and_ssim_match_their_definitions():
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(2, 16, 14, 1))
    y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1)
    mse = ((x - y) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(reconstruction.psnr(x, y), 10 * np.log10(1 / mse), rtol=1e-5)
    expected = [_np_ssim(x[i, ..., 0], y[i, ..., 0]) for i in range(2)]
    np.testing.assert_allclose(reconstruction.ssim(x, y), expected, rtol=1e-4)
    np.testing.assert_allclose(reconstruction.ssim(x, x), 1.0, rtol=1e-5)


def _jitted_step(spec):
    return jax.jit(functools.partial(ae_step.autoencoder_step, spec=spec))


def _config(name):
    """The quick config, its domain classifier (the MNIST configs' perceptual stand-in) trained
    for 10 steps, not the quick configs' 100: these tests need a classifier, not an accurate one,
    and it is trained (once per data dir) by this file alone, 5 s against 3 s of CPU."""
    config = load_config(name)
    config.eval.classifier_steps = 10
    return config


def _state_and_batch(name, b=4, ema_decay=None, **model):
    config = _config(name)
    config.model.update(model)
    if ema_decay is not None:
        config.train.ema_decay = ema_decay
    family = families.of(config)
    state = family.create_state(config, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (b, 28, 28, 1), minval=-1.0, maxval=1.0)
    return config, family, state, {"image": x}


def test_the_kl_autoencoders_loss_is_the_nll_with_its_log_variance_plus_the_weighted_kl():
    config, family, state, batch = _state_and_batch(
        "kl_autoencoder_mnist",
        discriminator=False,
        perceptual="classifier",
        perceptual_weight=0.5,
        kl_weight=0.3,
    )
    params = state.ae.params
    params = {**params, "logvar": jnp.float32(0.7)}
    state = state.replace(ae=state.ae.replace(params=params))
    rng = jax.random.key(5)
    _, metrics = _jitted_step(family.step_spec(config))(state, batch, rng)
    apply = jax.jit(  # compiled, not every layer's ops one by one
        lambda x, method: state.ae.apply_fn({"params": params}, x, method=method),
        static_argnames="method",
    )
    moments = np.asarray(apply(batch["image"], method="encode"), np.float64)
    mean, logvar = np.split(moments, 2, axis=-1)
    eps = np.asarray(jax.random.normal(jax.random.split(rng)[0], mean.shape), np.float64)
    z = mean + np.exp(0.5 * logvar) * eps
    x_hat = np.asarray(apply(jnp.asarray(z, jnp.float32), method="decode"), np.float64)
    x = np.asarray(batch["image"], np.float64)
    p = jax.jit(perceptual.classifier_distance)(
        state.perceptual, batch["image"], jnp.asarray(x_hat, jnp.float32)
    )
    error = np.abs(x - x_hat) + 0.5 * np.asarray(p, np.float64).reshape(-1, 1, 1, 1)
    nll = (error / np.exp(0.7) + 0.7).reshape(4, -1).sum(1).mean()
    kl = (0.5 * (mean**2 + np.exp(logvar) - 1 - logvar)).reshape(4, -1).sum(1).mean()
    np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-4)
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss"], nll + 0.3 * kl, rtol=1e-4)
    np.testing.assert_allclose(metrics["perceptual"], np.mean(p), rtol=1e-4)
    assert float(np.mean(p)) > 0


def test_the_adaptive_weight_is_the_ratio_of_finite_difference_gradient_norms():
    config, family, state, batch = _state_and_batch(
        "vqgan_mnist", perceptual="none", adaptive_weight_max=1e4
    )
    disc_weight = float(state.ae.hparams["disc_weight"])
    _, metrics = _jitted_step(family.step_spec(config))(state, batch, jax.random.key(0))
    ae, d, x = state.ae, state.d, np.asarray(batch["image"], np.float64)

    @jax.jit  # compiled, not every layer's ops one by one
    def decoder_features(params, images):
        codebook = params["codebook"]
        z_e = ae.apply_fn({"params": params}, images, method="encode")
        z = quantizer.lookup(quantizer.nearest_codes(z_e, codebook), codebook)
        return ae.apply_fn({"params": params}, z, method="decoder_features")

    h = decoder_features(ae.params, batch["image"])
    with jax.enable_x64(True):
        h64 = jnp.asarray(h, jnp.float64)
        d64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), d.params)
        last = jax.tree.map(lambda a: np.asarray(a, np.float64), ae.params["decoder"]["conv_out"])
        flat, unravel = jax.flatten_util.ravel_pytree(last)

        def terms(w):
            conv = unravel(w)
            x_hat = (
                jax.lax.conv_general_dilated(
                    h64, conv["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
                )
                + conv["bias"]
            )
            g = -jnp.mean(d.apply_fn({"params": d64}, x_hat))  # the hinge G loss
            return jnp.stack([jnp.mean(jnp.abs(x - x_hat)), g])

        step, flat = 1e-6, np.asarray(flat)
        # compiled with LLVM's optimisations, which the suite turns off (tests/conftest.py): its
        # 146 float64 passes through D ran 7x as fast (4.4 against 0.6 s of CPU)
        terms = jax.jit(terms).lower(flat).compile({"xla_backend_optimization_level": 1})
        shifts = np.eye(flat.size) * step  # central differences, one weight at a time
        grads = np.stack(
            [
                (np.asarray(terms(flat + shift)) - np.asarray(terms(flat - shift))) / (2 * step)
                for shift in shifts
            ]
        )
    ratio = np.linalg.norm(grads[:, 0]) / (np.linalg.norm(grads[:, 1]) + 1e-4)
    np.testing.assert_allclose(metrics["adaptive_weight"], disc_weight * min(ratio, 1e4), rtol=1e-3)


def _sgd(state):
    """`state` updated by plain SGD (learning rate 1): its weights move by the gradient itself,
    which Adam would normalise (a gradient that is zero but for rounding, such as a bias before
    a one-channel group norm, would move by ±lr on either side)."""
    tx = optax.sgd(1.0)
    return state.replace(tx=tx, opt_state=tx.init(state.params))


def test_the_weights_average_follows_its_definition_and_is_what_encodes_and_decodes():
    config, family, state, batch = _state_and_batch("vq_vae_mnist", ema_decay=0.99)
    new, _ = _jitted_step(family.step_spec(config))(state, batch, jax.random.key(2))
    decay = min(0.99, 2 / 11)  # warmed up at step 1: (1 + t)/(10 + t)
    flat = lambda tree: np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])  # NumPy
    expected = decay * flat(state.ae.params) + (1 - decay) * flat(new.ae.params)
    np.testing.assert_allclose(flat(new.ae.ema_params), expected, rtol=1e-6, atol=1e-7)
    codebook = np.asarray(new.ae.ema_params["codebook"])
    assert not np.array_equal(codebook, new.ae.params["codebook"])
    # encoding and decoding read the average: the nearest codes of its encoder's outputs in its
    # codebook (NumPy), decoded by the same network with the average's weights
    average = new.replace(ae=new.ae.replace(params=new.ae.ema_params, ema_params=None))
    live = new.replace(ae=new.ae.replace(ema_params=None))

    @jax.jit  # one compiled program, not every layer's ops one by one
    def encoded_and_decoded(states, x):
        new = states[0]
        z_e = new.ae.apply_fn({"params": new.ae.ema_params}, x, method="encode")
        codes = family.encode(new, x)
        return z_e, codes, [family.decode(s, codes) for s in states]

    z_e, codes, (decoded, by_average, by_live) = jax.device_get(
        encoded_and_decoded((new, average, live), batch["image"])
    )
    z_e = z_e.reshape(-1, z_e.shape[-1])
    np.testing.assert_array_equal(codes.reshape(-1), _np_nearest(z_e, codebook))
    np.testing.assert_array_equal(decoded, by_average)
    assert not np.array_equal(decoded, by_live)


def test_the_adaptive_weight_is_clipped_at_its_field():
    nll, g = {"w": jnp.array([3.0, 4.0])}, {"w": jnp.array([0.0, 0.01])}  # norms 5 and 0.01
    assert float(ae_step.adaptive_weight(nll, g)) == pytest.approx(5 / (0.01 + 1e-4), rel=1e-5)
    assert float(ae_step.adaptive_weight(nll, g, 2.0)) == 2.0  # model.adaptive_weight_max


def _relative_error(a, b) -> float:
    """‖a − b‖ / ‖b‖ over every array of the trees together."""
    diff = sum(
        np.sum((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    norm = sum(np.sum(np.asarray(y, np.float64) ** 2) for y in jax.tree.leaves(b))
    return float(np.sqrt(diff / norm))


def test_a_pmap_step_equals_the_jit_step():
    """The codebook's counts, EMA sums and restarts, the adaptive weight's gradients and the
    perceptual term (the domain classifier's) computed under pmap as jit computes them (the KL's
    noise is `collectives.normal_rows`, checked with the VAEs')."""
    n, b = 4, 8
    if len(jax.local_devices()) < n:
        pytest.skip("needs 4 devices (tests/conftest.py asks for 8 host CPU devices)")
    config, family, state, batch = _state_and_batch("vqgan_mnist", b, codebook_update="ema")
    state = state.replace(ae=_sgd(state.ae), d=_sgd(state.d))
    spec, rng = family.step_spec(config), jax.random.key(5)
    step = functools.partial(ae_step.autoencoder_step, spec=spec)
    single, m1 = jax.jit(step)(state, batch, rng)
    # stacked and sharded in NumPy: eager jnp ops would compile a program per array shape
    stacked = jax.tree.map(lambda a: np.stack([np.asarray(a)] * n), state)
    shards = jax.tree.map(lambda a: np.asarray(a).reshape(n, b // n, *a.shape[1:]), batch)
    multi, m2 = jax.pmap(
        functools.partial(step, axis_name="data"),
        axis_name="data",
        in_axes=(0, 0, None),
        devices=jax.local_devices()[:n],
    )(stacked, shards, rng)
    for key in m1:
        np.testing.assert_allclose(m2[key][0], m1[key], rtol=1e-4, atol=1e-6, err_msg=key)
    one = jax.tree.map(lambda a: a[0], multi)
    # the weights after one step differ by the gradients' rounding: 100 float32 epsilons of
    # their norm is test_parallel.py's allowance (gradients not averaged over the devices fail
    # the metrics above first: grad_norm 72% off)
    assert (
        _relative_error(
            (one.ae.params, one.ae.stats, one.d.params),
            (single.ae.params, single.ae.stats, single.d.params),
        )
        <= 100 * EPS32
    )


def test_a_vqgan_resumes_bitwise_and_its_codes_decode_to_its_reconstructions(tmp_path, capsys):
    config = _config("vqgan_mnist")
    config.parallel.num_devices = 1  # the multi-device paths: test_a_pmap_step_equals_the_jit_step
    # 8 steps of 8 images, D's from step 4 on (disc_start); checkpoints at steps 6 and 8, one
    # evaluation (the last)
    config.train.steps = config.eval.every = 8
    config.train.batch_size = 8
    full = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path / "full")))
    fresh = families.create_state(config, state_lib.run_keys(config.seed)["init"])
    assert int(full.d.step) == 8 and not tree_equal(full.d.params, jax.device_get(fresh.d.params))
    # a run cut off after its step-6 save (D and its optimizer mid-training): that checkpoint
    # alone in a workdir of its own
    middle = config.train.checkpoint_every
    resumed, logged = resume_copy(tmp_path / "full", middle, tmp_path / "resumed", config)
    assert tree_equal(jax.device_get(resumed), full)
    assert logged[0] > middle  # it resumed: steps 1-6 not run again
    with open(tmp_path / "full" / "metrics.jsonl") as f:
        row = json.loads(f.readlines()[-1])
    assert {"perplexity", "codes_used", "adaptive_weight", "d_loss", "recon"} <= set(row)
    assert (tmp_path / "full" / "samples" / "reconstructions_000008.png").exists()

    work, codes, out = str(tmp_path / "full"), str(tmp_path / "codes.npz"), str(tmp_path / "x.npz")
    encode = f"encode --workdir {work} --split test --num 40 --out {codes}"
    decode = f"decode --workdir {work} --latents {codes} --format npz --out {out}"
    assert main.main(["genimg", *encode.split()]) == 0
    assert main.main(["genimg", *decode.split()]) == 0
    with np.load(codes) as f:
        assert f["codes"].shape == (40, 7, 7) and f["codes"].dtype == np.int32
        assert f["labels"].shape == (40,) and int(f["step"]) == 8
    # what `genimg reconstruct` shows: the split's images through encode and decode
    x, _ = latents.split_images(config, "test", 40)
    state = jax.device_get(full)
    rebuilt = latents.decode_latents(config, state, latents.encode_images(config, state, x))
    with np.load(out) as f:
        np.testing.assert_array_equal(f["images"], outputs.to_uint8(rebuilt, (-1.0, 1.0)))
    capsys.readouterr()
    assert main.main(["genimg", "sample", "--workdir", work]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "draws no samples from noise" in err[0] and "reconstruct" in err[0]
    with pytest.raises(ConfigError, match="draws no samples"):  # refused before reading one
        next(sample.draw_batches(config, str(tmp_path / "no_checkpoint_here"), 5))


def test_a_vectorized_sweep_over_kl_weights_equals_its_solo_runs(tmp_path):
    configs = []
    for weight in [1e-3, 1.0]:  # two members: each with its own weight, as many would be
        config = load_config("kl_autoencoder_mnist")
        config.model.kl_weight = weight
        config.model.discriminator, config.model.perceptual = False, "none"  # the KL's part
        config.parallel.num_devices = 1
        config.train.steps = config.train.checkpoint_every = config.eval.every = 2
        config.train.log_every = 1  # rows at steps 1 and 2
        config.train.batch_size = 8
        configs.append(config)
    solo = [str(tmp_path / f"solo{i}") for i in range(2)]
    together = [str(tmp_path / f"vmap{i}") for i in range(2)]
    for config, workdir in zip(configs, solo, strict=True):
        trainer.train([config], [workdir])
    trainer.train(configs, together, "vmap")

    def rows(workdir):
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return [json.loads(line) for line in f]

    for a, b in zip(solo, together, strict=True):
        for x, y in zip(rows(a), rows(b), strict=True):
            assert x["step"] == y["step"]
            for key in ("loss", "nll", "kl", "grad_norm"):
                assert y[key] == pytest.approx(x[key], rel=1e-3, abs=1e-5), (a, key)
    assert len({rows(b)[-1]["loss"] for b in together}) == 2  # each member had its own weight


def test_the_shapes_vqgan_scores_without_a_feature_net_and_keeps_its_best_by_psnr(tmp_path):
    """The shapes have no labels for the domain classifier: with `eval.feature_net='none'` the
    run scores PSNR, SSIM and its codebook, no rFID, and a best checkpoint by rFID is refused."""
    config = load_config("vqgan_shapes")
    config.eval.scores = True
    config.parallel.num_devices = 1
    config.train.steps = config.train.checkpoint_every = config.eval.every = 2
    config.train.batch_size = 8  # what is scored does not depend on how it was trained
    trainer.train_and_evaluate(config, str(tmp_path))
    with open(tmp_path / "summary.json") as f:
        scores = json.load(f)["eval"]
    assert {"psnr", "ssim", "codebook_usage", "codebook_perplexity"} <= set(scores)
    assert "rfid" not in scores and scores["best_step"] == 2
    assert os.listdir(tmp_path / "checkpoints_best") == ["2"]
    config.eval.best_metric = "rfid"
    with pytest.raises(ConfigError, match="eval.best_metric"):
        config_lib.validate(config)
