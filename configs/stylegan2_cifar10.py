"""StyleGAN2 on CIFAR-10, as StyleGAN2-ADA's `cifar` configuration (and PyTorch-StudioGAN's
StyleGAN2 CIFAR-10 config): 512 channels at every size, a 2-layer mapping network, minibatch-std
groups of 32, Adam(0.0025, β = (0, 0.99)), R1 γ = 0.01 every 16 D steps, G's EMA with a 500 kimg
half-life; path-length regularisation and style mixing off (both configurations turn them off
for CIFAR-10; `--config.train.pl_weight=2 --config.train.style_mixing=0.9` turns them on).

genimg train --config configs/stylegan2_cifar10.py --workdir runs/stylegan2_cifar10
genimg train --config configs/stylegan2_cifar10.py:quick --workdir /tmp/q   # offline, seconds

CIFAR-10 must be prepared first (needs the internet and TensorFlow; README, "Data"). The
StudioGAN protocol behind its table (StyleGAN2 FID 3.78): class-conditional
(`--config.model.num_classes=10`; StudioGAN's cAdaIN/SPD conditioning differs from this G's
class embedding and D's projection), InceptionV3 FID of 50,000 samples against the 50,000
training images: `--config.eval.feature_net=inception --config.eval.inception_weights=...
--config.eval.examples=50000 --config.eval.reference_split=train`. Differences from the
official networks: D is residual (theirs is the plain "orig" D for CIFAR-10) and the models
module lists the rest. `:quick` trains tiny networks on the bundled digits tiled to RGB.
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("stylegan2")
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.data.channels = 3
    c.model.latent_dim = 512
    c.model.w_dim = 512
    c.model.mapping_layers = 2
    c.model.g_width = c.model.d_width = 512  # channel_base 16384 / 32 px
    c.model.channel_max = 512
    c.model.mbstd_group = 32
    c.train.g_lr = c.train.d_lr = 0.0025
    c.train.r1_gamma = 0.01
    c.train.ema_kimg = 500.0
    c.train.pl_weight = 0.0
    c.train.style_mixing = 0.0
    c.train.steps = 1_562_500  # 100,000 kimg of batch 64, the StyleGAN2-ADA CIFAR-10 schedule
    c.train.batch_size = 64
    c.train.log_every = 100
    c.train.checkpoint_every = 5000
    c.eval.every = 5000
    if arg == "quick":
        c.data.name = "bundled_mnist"  # grey digits tiled to RGB (data.channels = 3)
        shrink_for_tests(c)
    return c
