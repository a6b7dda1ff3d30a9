"""The SN-GAN ResNet family: shapes, spectral normalisation (against numpy.linalg.svd), and
which step moves which state (D's power-iteration statistics advance in the D step only, and
round-trip through checkpoints and resume)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled_state, load_config, resume_copy, tree_all_differ, tree_equal

from genimg_jax import families
from genimg_jax.core import state
from genimg_jax.families import GANFamily
from genimg_jax.families.gan import step as gan_step
from genimg_jax.runtime import parallel
from genimg_jax.training import loop as trainer
from genimg_jax.training.checkpoint import Checkpoints


def _config(size=32, channels=3):
    config = load_config("sngan_cifar10")
    config.data.image_size, config.data.channels = size, channels
    return config


@pytest.fixture(scope="module")
def state32():
    """The state of seed 0 for `_config()` (32 px RGB), built once for the tests that use it."""
    return compiled_state(_config(), jax.random.key(0))


def test_resnet_gan_is_a_registered_gan_family():
    assert isinstance(families.get("resnet_gan"), GANFamily)


@pytest.mark.parametrize("size,channels", [(32, 3), (28, 1)])  # 16-256 px traced in test_models
def test_shapes_follow_the_config(size, channels, request):
    config = _config(size, channels)
    if (size, channels) == (32, 3):
        s = request.getfixturevalue("state32")
    else:
        s = compiled_state(config, jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (3, config.model.latent_dim))

    @jax.jit  # one program, not every layer's ops one by one
    def forward(g, d, z):
        fake = g.apply_fn(g.variables(), z, train=False)
        return fake, d.apply_fn(d.variables(), fake)

    fake, logits = forward(s.g, s.d, z)
    assert fake.shape == (3, size, size, channels) and fake.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(fake))) <= 1.0
    assert logits.shape == (3,)
    assert s.d.batch_stats, "D's spectral-norm state lives in its batch_stats"


def test_the_full_size_networks_are_sn_gans_cifar_resnet():
    config = load_config("sngan_cifar10", None)
    g, d = families.get("resnet_gan").build(config)
    z, x = jnp.zeros((1, 128)), jnp.zeros((1, 32, 32, 3))
    g_params = jax.eval_shape(g.init, jax.random.key(0), z)["params"]
    d_params = jax.eval_shape(d.init, jax.random.key(0), x)["params"]
    assert g_params["Dense_0"]["kernel"].shape == (128, 4 * 4 * 256)
    assert [k for k in g_params if k.startswith("GBlock")] == [f"GBlock_{i}" for i in range(3)]
    assert [k for k in d_params if k.startswith("DBlock")] == [f"DBlock_{i}" for i in range(4)]
    assert d_params["Dense_0"]["kernel"].shape == (128, 1)
    count = lambda p: sum(np.prod(v.shape) for v in jax.tree.leaves(p))
    # Miyato et al.'s CIFAR ResNet: G ≈ 4.3M parameters, D ≈ 1.0M
    assert 4.0e6 < count(g_params) < 4.6e6 and 0.9e6 < count(d_params) < 1.1e6


def _sn_pairs(d_state):
    """(name, weight matrix [fan_in, out], stored sigma) for every spectrally normalised weight."""
    pairs = []
    for path, sigma in jax.tree_util.tree_leaves_with_path(d_state.batch_stats):
        keys = [p.key for p in path]
        if not keys[-1].endswith("/sigma"):
            continue
        layer, name, _ = keys[-1].split("/")
        node = d_state.params
        for key in keys[:-2] + [layer, name]:  # drop the SpectralNorm_k wrapper's level
            node = node[key]
        weight = np.asarray(node, np.float64)
        pairs.append(("/".join(keys), weight.reshape(-1, weight.shape[-1]), float(sigma)))
    return pairs


def test_spectral_norm_bounds_every_d_weight_after_power_iterations():
    config = _config()
    config.model.num_classes = 10  # the projection embedding is normalised too
    s = compiled_state(config, jax.random.key(0))
    # Flax's SpectralNorm stores W/σ̂ as the parameter at init, so spread the weights' spectral
    # norms out (2, 3, ...) to make the check bite.
    leaves, treedef = jax.tree.flatten(s.d.params)
    factors = [2.0 + i if leaf.ndim >= 2 else 1.0 for i, leaf in enumerate(leaves)]
    scaled = [np.asarray(v) * f for v, f in zip(leaves, factors, strict=True)]  # not op by op
    params = jax.tree.unflatten(treedef, scaled)
    s = s.replace(d=s.d.replace(params=params))
    x = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))  # the estimates are x-free
    labels = jnp.array([1])

    @jax.jit
    def iterate(batch_stats):
        def one(stats, _):
            variables = {"params": s.d.params, "batch_stats": stats}
            _, updates = s.d.apply_fn(
                variables, x, labels, update_stats=True, mutable=["batch_stats"]
            )
            return updates["batch_stats"], None

        return jax.lax.scan(one, batch_stats, None, length=300)[0]

    d = s.d.replace(batch_stats=iterate(s.d.batch_stats))
    pairs = _sn_pairs(d)
    # 4 blocks (3 + 3 + 2 + 2 convs), the dense layer and the embedding
    assert len(pairs) == 12
    tops = []
    for name, weight, sigma in pairs:
        top = np.linalg.svd(weight, compute_uv=False)[0]
        tops.append(top)
        np.testing.assert_allclose(sigma, top, rtol=2e-3, err_msg=name)
        normalised = np.linalg.svd(weight / sigma, compute_uv=False)[0]
        np.testing.assert_allclose(normalised, 1.0, rtol=2e-3, err_msg=name)
    assert max(tops) > 5  # the weights themselves are far from unit norm


def test_d_uses_the_normalised_weights(state32):
    """D's output is unchanged when every weight it normalises is scaled by a constant."""
    s = state32
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    scaled = jax.tree_util.tree_map_with_path(
        lambda p, v: np.asarray(v) * 7.0 if p[-1].key == "kernel" else v, s.d.params
    )
    d = jax.jit(lambda params: s.d.apply_fn(s.d.variables(params), x))  # one program
    out, out_scaled = d(s.d.params), d(scaled)
    np.testing.assert_allclose(out, out_scaled, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def gan(state32):
    config, s = _config(), state32
    batch = {"image": jax.random.uniform(jax.random.key(1), (8, 32, 32, 3), minval=-1, maxval=1)}
    return config, s, batch


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
def test_d_step_updates_d_and_its_spectral_norm_state_and_leaves_g_untouched(gan):
    config, s, batch = gan
    spec = families.of(config).step_spec(config)
    d_step = jax.jit(functools.partial(gan_step.d_step, spec=spec))
    new, metrics = d_step(s, batch, jax.random.key(2))
    assert tree_equal(new.g, s.g)
    assert tree_all_differ(new.d.params, s.d.params)
    u_of = lambda stats: [
        v for p, v in jax.tree_util.tree_leaves_with_path(stats) if p[-1].key.endswith("/u")
    ]
    assert tree_all_differ(u_of(new.d.batch_stats), u_of(s.d.batch_stats))  # every u moved
    assert np.isfinite(float(metrics["d_loss"]))
    # each stored sigma is the estimate the update's forward pass used, v·W·u of the weights
    # before the update: a lower bound of their top singular value
    for name, weight, sigma in _sn_pairs(s.d.replace(batch_stats=new.d.batch_stats)):
        assert 0 < sigma <= np.linalg.svd(weight, compute_uv=False)[0] * (1 + 1e-5), name


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
def test_g_step_leaves_d_params_and_statistics_untouched(gan):
    config, s, batch = gan
    spec = families.of(config).step_spec(config)
    g_step = jax.jit(functools.partial(gan_step.g_step, spec=spec))
    new, metrics = g_step(s, batch, jax.random.key(3))
    assert tree_equal(new.d, s.d)  # params, spectral-norm state, optimizer, step
    assert tree_all_differ(new.g.params, s.g.params)
    assert tree_all_differ(new.g.batch_stats, s.g.batch_stats)
    assert np.isfinite(float(metrics["g_loss"]))


def _quick():
    """The quick config on one device, sample grids at the end only (its checkpoints still every
    6 steps of 12)."""
    config = load_config("sngan_cifar10")
    config.parallel.num_devices = 1
    config.eval.every = config.train.steps
    return config


@pytest.mark.accelerator  # benchmarks/device_check.sh runs it on the GPU
def test_quick_config_trains_saves_d_statistics_and_resumes_bitwise(tmp_path):
    config = _quick()
    full = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path / "full")))
    assert full.d.batch_stats and int(full.step) == config.train.steps
    fresh = compiled_state(config, state.run_keys(config.seed)["init"])
    assert tree_all_differ(full.d.batch_stats, jax.device_get(fresh.d.batch_stats))

    restored = Checkpoints(str(tmp_path / "full"), 3).restore(
        families.abstract_initial_state(config, parallel.make_mesh())  # shapes and shardings
    )
    assert tree_equal(jax.device_get(restored.d.batch_stats), full.d.batch_stats)

    # A run stopped after its step-6 checkpoint: that checkpoint alone in a fresh workdir
    middle = config.train.checkpoint_every
    assert 0 < middle < config.train.steps
    resumed, logged = resume_copy(tmp_path / "full", middle, tmp_path / "resumed", config)
    assert logged == [8, 12]  # it trained steps 7 to 12 only
    assert tree_equal(jax.device_get(resumed), full)
    assert os.path.exists(tmp_path / "resumed" / "samples" / "samples_000012.png")
