"""StyleGAN2 on the bundled MNIST digits (offline): a small StyleGAN2 (28x28, 7 -> 14 -> 28,
sized to train on a 2-core CPU) with the paper's regularisers: lazy R1, lazy path-length
regularisation, style mixing, G's EMA with a half-life in images.

genimg train --config configs/stylegan2_mnist.py --workdir runs/stylegan2_mnist
genimg train --config configs/stylegan2_mnist.py:quick --workdir /tmp/quick   # seconds
genimg sample --workdir runs/stylegan2_mnist --truncation 0.7 --out truncated.png
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("stylegan2")
    c.data.name = "bundled_mnist"
    c.data.image_size = 28
    c.model.latent_dim = 64
    c.model.w_dim = 64
    c.model.mapping_layers = 2  # as StyleGAN2-ADA's CIFAR-10 configuration
    c.model.g_width = 16  # channels: 16 at 28 px, 32 at 14, 64 at 7
    c.model.d_width = 16
    c.model.channel_max = 64
    c.train.g_lr = c.train.d_lr = 2e-4  # the paper's 0.002 collapsed these small networks
    c.train.r1_gamma = 0.1
    c.train.steps = 4000
    c.train.batch_size = 32
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    if arg == "quick":
        shrink_for_tests(c)
    return c
