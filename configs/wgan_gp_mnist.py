"""WGAN-GP (Gulrajani et al. 2017) on the bundled MNIST digits: the DCGAN networks as generator
and critic, Wasserstein loss, gradient penalty λ = 10, 5 critic updates per G update,
Adam(1e-4, β1=0.5, β2=0.9).

genimg train --config configs/wgan_gp_mnist.py --workdir runs/wgan_gp_mnist
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("dcgan")
    c.model.family = "dcgan"
    c.data.name = "bundled_mnist"
    c.data.image_size = 28
    c.model.latent_dim = 64
    c.model.g_width = 64
    c.model.d_width = 64
    c.train.loss = "wasserstein"
    c.train.gp_weight = 10.0
    c.train.d_steps = 5
    c.train.g_lr = 1e-4
    c.train.d_lr = 1e-4
    c.train.b1 = 0.5
    c.train.b2 = 0.9
    c.train.steps = 5000
    c.train.batch_size = 64
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    if arg == "quick":
        shrink_for_tests(c)
        c.train.d_steps = 2
    return c
