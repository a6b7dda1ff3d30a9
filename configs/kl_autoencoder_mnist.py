"""The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022) on the bundled MNIST
digits: 28 px images as 7×7×4 Gaussian latents (f = 4), KL weight 1e-6, an L1 reconstruction
likelihood with a learned log-variance, and the PatchGAN with taming's adaptive weight.

genimg train --config configs/kl_autoencoder_mnist.py --workdir runs/kl_ae
genimg encode --workdir runs/kl_ae --split train --out runs/kl_ae/latents.npz
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("kl_autoencoder")
    c.data.name = "bundled_mnist"
    c.data.image_size = 28
    c.model.downsample = 4
    c.model.width = 32
    c.model.res_blocks = 1
    c.model.latent_dim = 4  # latent channels
    c.model.kl_weight = 1e-6
    c.model.disc_width = 32
    c.model.disc_layers = 2
    c.model.disc_start = 500
    # taming's clip 1e4 let λ reach 8,000 here; with vqgan_mnist's clip and a quarter of taming's
    # weight every score improved (docs/autoencoders.md)
    c.model.adaptive_weight_max = 1.0
    c.model.disc_weight = 0.2
    c.train.lr = 2e-4
    c.train.disc_lr = 1e-3  # 5x the autoencoder's: at 2e-4 D fell behind (docs/autoencoders.md)
    c.train.ema_decay = 0.999  # scored on the weights' average: steadier rFID between checkpoints
    c.train.steps = 3000
    c.train.batch_size = 32
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    if arg == "quick":
        shrink_for_tests(c)
        c.model.disc_start = 4
    return c
