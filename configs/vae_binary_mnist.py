"""Convolutional VAE with a Bernoulli decoder on statically binarised MNIST digits (each pixel
thresholded at 0.5 once scaled to [0, 1]), the setting in which the Bernoulli likelihood is
exact and test-set ELBOs are comparable with the literature's binarised-MNIST numbers.

genimg train --config configs/vae_binary_mnist.py --workdir runs/vae_binary_mnist
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("conv_vae")
    c.model.family = "conv_vae"
    c.data.name = "bundled_mnist"
    c.data.image_size = 28
    c.data.binarize = True
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
