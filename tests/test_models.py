"""Model families: shapes from the config, output ranges, the registry."""

import jax
import jax.numpy as jnp
import pytest
from conftest import load_config

from genimg_jax import family, state


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 1)])
def test_dcgan_shapes_follow_the_config(size, channels):
    config = load_config("dcgan_mnist")
    config.data.image_size, config.data.channels = size, channels
    s = state.create_state(config, jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (3, config.model.latent_dim))
    fake = s.g.apply_fn(s.g.variables(), z, train=False)
    assert fake.shape == (3, size, size, channels)
    assert float(jnp.max(jnp.abs(fake))) <= 1.0
    logits = s.d.apply_fn(s.d.variables(), fake)
    assert logits.shape == (3,)


@pytest.mark.parametrize("size,channels", [(28, 1), (64, 3)])
def test_vae_shapes_follow_the_config(size, channels):
    config = load_config("vae_mnist")
    config.data.image_size, config.data.channels = size, channels
    s = state.create_state(config, jax.random.key(0))
    x = jnp.zeros((2, size, size, channels))
    eps = jax.random.normal(jax.random.key(1), (2, config.model.latent_dim))
    logits, mean, logvar = s.apply_fn({"params": s.params}, x, eps)
    assert logits.shape == x.shape
    assert mean.shape == logvar.shape == (2, config.model.latent_dim)


def test_unknown_family_and_size_name_the_choices():
    with pytest.raises(ValueError, match="known families"):
        family.get("stylegan9")
    config = load_config("dcgan_mnist")
    config.data.image_size = 48
    with pytest.raises(ValueError, match="48"):
        state.create_state(config, jax.random.key(0))
