"""SN-GAN (Miyato et al. 2018) on CIFAR-10: the ResNet G and spectrally normalised ResNet D,
hinge loss, 5 D updates per G update, Adam(2e-4, β1=0, β2=0.9).

genimg train --config configs/sngan_cifar10.py --workdir runs/sngan_cifar10
genimg train --config configs/sngan_cifar10.py:quick --workdir /tmp/q   # offline, seconds

CIFAR-10 must be prepared first (needs the internet and TensorFlow; see the README). `:quick`
trains tiny networks on the bundled MNIST digits tiled to RGB, so it runs offline.
`--config.model.num_classes=10` makes it class-conditional (conditional BatchNorm in G,
projection D).
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("dcgan")
    c.model.family = "resnet_gan"
    c.model.latent_dim = 128
    c.model.g_width = 256  # SN-GAN's CIFAR G: 256 channels throughout
    c.model.d_width = 128  # ... and D: 128
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.data.channels = 3
    c.train.loss = "hinge"
    c.train.d_steps = 5
    c.train.optimizer = "adam"
    c.train.g_lr = 2e-4
    c.train.d_lr = 2e-4
    c.train.b1 = 0.0
    c.train.b2 = 0.9
    c.train.ema_decay = 0.9999
    c.train.steps = 50_000  # G updates (250k D updates)
    c.train.batch_size = 64
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.eval.every = 2000
    if arg == "quick":
        c.data.name = "bundled_mnist"  # grey digits tiled to RGB (data.channels = 3)
        shrink_for_tests(c)
        c.train.d_steps = 2
    return c
