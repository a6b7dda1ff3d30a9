"""VQ-VAE (van den Oord et al. 2017) on the bundled MNIST digits: 28 px images as 7×7 codes of a
128-entry codebook (f = 4), trained on an L2 reconstruction alone: the baseline of
configs/vqgan_mnist.py, with the same networks and steps.

genimg train --config configs/vq_vae_mnist.py --workdir runs/vq_vae
genimg reconstruct --workdir runs/vq_vae --out runs/vq_vae/reconstructions.png
genimg encode --workdir runs/vq_vae --split train --out runs/vq_vae/codes.npz
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("vq_vae")
    c.data.name = "bundled_mnist"
    c.data.image_size = 28
    c.model.downsample = 4
    c.model.width = 32
    c.model.res_blocks = 1
    c.model.latent_dim = 32  # code size
    c.model.codebook_size = 128
    c.train.lr = 2e-4
    c.train.ema_decay = 0.999  # scored on the weights' average: steadier rFID between checkpoints
    c.train.steps = 3000
    c.train.batch_size = 32
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    if arg == "quick":
        shrink_for_tests(c)
    return c
