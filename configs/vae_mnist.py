"""Convolutional VAE on the bundled MNIST digits with a Bernoulli decoder.

genimg train --config configs/vae_mnist.py --workdir runs/vae_mnist --config.model.beta=4.0
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("conv_vae")
    c.data.name = "bundled_mnist"
    c.data.image_size = 28
    c.model.latent_dim = 16
    c.model.width = 32
    c.model.hidden = 256
    c.model.beta = 1.0
    c.train.reconstruction = "bernoulli"
    c.train.lr = 1e-3
    c.train.steps = 2000
    c.train.batch_size = 128
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    if arg == "quick":
        shrink_for_tests(c)
    return c


def get_sweep(arg: str | None = None):
    """lr × seed (6 members); `quick`: lr ∈ {1e-3, 3e-3} × seed 0 (2 members)."""
    from genimg_jax.sweeps.spec import axis, product

    if arg == "quick":
        return product(axis("train.lr", [1e-3, 3e-3]), axis("seed", [0]))
    return product(axis("train.lr", [3e-4, 1e-3, 3e-3]), axis("seed", [0, 1]))
