"""Model families: shapes from the config, output ranges, the registry."""

import os
from contextlib import nullcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled_state, load_config
from PIL import Image

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core.errors import ConfigError
from genimg_jax.families import draw as sampling
from genimg_jax.models import common
from genimg_jax.training import loop as trainer


@pytest.mark.parametrize("size,channels", [(32, 3)])  # 28: the main job's; 16-256: traced below
def test_dcgan_shapes_follow_the_config(size, channels):
    config = load_config("dcgan_mnist")
    config.data.image_size, config.data.channels = size, channels
    z = jax.random.normal(jax.random.key(1), (3, config.model.latent_dim))

    @jax.jit  # one program (the initial state too), not every layer's ops one by one
    def forward(key, z):
        s = families.create_state(config, key)
        fake = s.g.apply_fn(s.g.variables(), z, train=False)
        return fake, s.d.apply_fn(s.d.variables(), fake)

    fake, logits = forward(jax.random.key(0), z)
    assert fake.shape == (3, size, size, channels)
    assert float(jnp.max(jnp.abs(fake))) <= 1.0
    assert logits.shape == (3,)


@pytest.mark.parametrize("size,channels", [(28, 1), (64, 3)])
def test_vae_shapes_follow_the_config(size, channels):
    config = load_config("vae_mnist")
    config.data.image_size, config.data.channels = size, channels
    x = jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)
    eps = jax.ShapeDtypeStruct((2, config.model.latent_dim), jnp.float32)

    def forward(key, x, eps):  # only shapes are checked: traced abstractly, nothing compiled
        s = families.create_state(config, key)
        return s.apply_fn({"params": s.params}, x, eps)

    logits, mean, logvar = jax.eval_shape(forward, jax.random.key(0), x, eps)
    assert logits.shape == x.shape
    assert mean.shape == logvar.shape == (2, config.model.latent_dim)


def test_unknown_family_and_size_name_the_choices():
    with pytest.raises(ValueError, match="known families"):
        families.get("stylegan9")
    config = load_config("dcgan_mnist")
    config.data.image_size = 48
    with pytest.raises(ValueError, match="48"):
        families.create_state(config, jax.random.key(0))


@pytest.mark.parametrize("size", [16, 256])
@pytest.mark.parametrize(
    "config_name,family_name",
    [
        ("dcgan_mnist", "dcgan"),
        ("sngan_cifar10", "resnet_gan"),
        ("stylegan2_mnist", "stylegan2"),
        ("vae_mnist", "conv_vae"),
    ],
)
def test_every_conv_family_builds_its_step_at_the_smallest_and_largest_size(
    config_name, family_name, size
):
    """The blocks follow the size (`common.spatial_plan`: 16 = 4·2², 256 = 4·2⁶; 128 = 4·2⁵ is
    the same loop of blocks, one shorter, and every size's plan is checked below): the training
    step and the samples trace to the right shapes (abstractly: compiling eight steps would take
    the suite minutes; the conv VAE's step runs for real at 256 below). The quick configs train
    at 28 and 32 px, folder_64 at 64 (tests/test_user_data.py)."""
    config = load_config(config_name)
    config.model.family = family_name
    config.data.image_size, config.data.channels = size, 3
    config.train.batch_size = 2
    if config.train.get("d_steps", 1) > 1:  # SN-GAN's 2 D updates: the same shapes, twice
        config.train.d_steps = 1
    s = jax.eval_shape(lambda key: families.create_state(config, key), jax.random.key(0))
    images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    batch = {"image": images, "label": jax.ShapeDtypeStruct((2,), jnp.int32)}  # labels: read
    step = families.make_train_step(config)  # by the conditional main job's models
    new_state, metrics = jax.eval_shape(step, s, batch, jax.random.key(2))
    assert jax.tree.map(lambda a: a.shape, new_state) == jax.tree.map(lambda a: a.shape, s)
    assert metrics and all(m.shape == () for m in metrics.values())
    z = jax.ShapeDtypeStruct((2, config.model.latent_dim), jnp.float32)
    labels = sampling.class_labels(2, config)  # None unless conditional
    shape = jax.eval_shape(families.of(config).samples, s, z, labels).shape
    assert shape == (2, size, size, 3)


@pytest.mark.parametrize(
    "config_name,size", [("dcgan_mnist", 16), ("vae_mnist", 16), ("vae_mnist", 128)]
)
def test_dcgan_and_conv_vae_train_through_the_loop_at_other_sizes(config_name, size, tmp_path):
    """Through the loop (quick sizes, 4 steps of 4 images): the bundled 28x28 digits are fitted
    to the size, down and up (at 64 px tests/test_user_data.py trains folder_64's DCGAN from
    the CLI)."""
    config = load_config(config_name)
    config.data.image_size = size
    config.parallel.num_devices = 1
    config.train.steps = config.train.log_every = config.train.checkpoint_every = 4
    config.train.batch_size = 4  # the sizes are the point, not the batch
    config.eval.every = 4
    final = trainer.train_and_evaluate(config, str(tmp_path))
    assert int(final.step) == 4
    grids = sorted(os.listdir(tmp_path / "samples"))
    side = int(np.ceil(np.sqrt(config.eval.num_samples))) * (size + 1) + 1
    assert grids and Image.open(tmp_path / "samples" / grids[0]).size == (side, side)


def test_the_conv_vae_trains_a_step_at_256_pixels():
    config = load_config("vae_mnist")
    config.data.image_size, config.data.channels, config.train.batch_size = 256, 3, 2
    s = compiled_state(config)
    x = jax.random.uniform(jax.random.key(1), (2, 256, 256, 3))
    s, metrics = jax.jit(families.make_train_step(config))(s, {"image": x}, jax.random.key(2))
    assert all(bool(jnp.isfinite(v)) for v in metrics.values()), metrics
    # only the samples' shape is checked: traced abstractly, not decoded op by op
    z = jax.ShapeDtypeStruct((2, config.model.latent_dim), jnp.float32)
    assert jax.eval_shape(families.of(config).samples, s, z, None).shape == (2, 256, 256, 3)


def test_spatial_plan_and_widths():
    plans = {s: common.spatial_plan(s) for s in common.SUPPORTED_IMAGE_SIZES}
    assert plans == {16: (4, 2), 28: (7, 2), 32: (4, 3), 64: (4, 4), 128: (4, 5), 256: (4, 6)}
    assert common.widths(64, 4) == [64, 128, 256, 512]  # the 64-pixel stacks, as before
    assert common.widths(64, 6) == [64, 128, 256, 512, 512, 512]
    with pytest.raises(ValueError, match="48"):
        common.spatial_plan(48)


def test_minibatch_stddev_is_the_groups_mean_standard_deviation():
    x = np.random.default_rng(2).normal(size=(8, 3, 3, 5))
    out = np.asarray(common.minibatch_stddev(jnp.asarray(x, jnp.float32), 4))
    np.testing.assert_array_equal(out[..., :5], x.astype(np.float32))
    for b in range(8):
        group = x[4 * (b // 4) : 4 * (b // 4) + 4]  # consecutive examples, so pmap's are jit's
        expected = np.mean(np.sqrt(np.var(group, axis=0) + 1e-8))
        np.testing.assert_allclose(out[b, :, :, 5], expected, rtol=1e-5)


def test_dcgans_minibatch_stddev_ties_each_logit_to_its_group_alone():
    """With `model.mbstd_group` = 4, changing one image changes D's logits of its own group of
    4 consecutive images and no others; without it, only its own logit."""
    x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1), minval=-1)
    changed = x.at[5].set(-x[5])
    for group, moved in ((4, [4, 5, 6, 7]), (0, [5])):
        config = load_config("dcgan_mnist_uncond")
        config.model.mbstd_group = group
        d = families.of(config).build(config)[1]
        params = jax.jit(d.init)(jax.random.key(1), x)  # compiled: not every op on its own
        apply = jax.jit(d.apply)
        diff = np.abs(np.asarray(apply(params, x)) - np.asarray(apply(params, changed)))
        assert list(np.flatnonzero(diff > 0)) == moved, group
        config.model.family = "resnet_gan"
        with pytest.raises(ConfigError, match="model.mbstd_group") if group else nullcontext():
            config_lib.validate(config)
