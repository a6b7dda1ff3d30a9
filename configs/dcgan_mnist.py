"""DCGAN on the bundled MNIST digits (offline): the default main job.

genimg train --config configs/dcgan_mnist.py --workdir runs/dcgan_mnist
genimg train --config configs/dcgan_mnist.py:quick --workdir /tmp/quick   # seconds
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("dcgan")
    c.data.name = "bundled_mnist"
    c.data.image_size = 28
    c.model.latent_dim = 64
    c.model.g_width = 64
    c.model.d_width = 64
    c.train.steps = 5000
    c.train.batch_size = 64
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    if arg == "quick":
        shrink_for_tests(c)
    return c
