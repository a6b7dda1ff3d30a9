"""Latent diffusion's KL autoencoder on your own images: a template. 64×64 RGB images become
16×16×4 latents (f = 4; `--config.data.image_size=128 --config.model.downsample=8` for 128 px),
with the PatchGAN from step 5,000 and LPIPS when its weights file is at eval.lpips_weights
(README, Autoencoders; a folder without labels has no classifier to stand in):

genimg train --config configs/kl_autoencoder_folder64.py --workdir runs/kl_mine --config.data.path=DIR
genimg encode --workdir runs/kl_mine --split train --out runs/kl_mine/latents.npz
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("kl_autoencoder")
    c.data.name = "folder"
    c.data.path = ""  # required: --config.data.path=/path/to/images
    c.data.image_size = 64
    c.data.channels = 3
    c.model.downsample = 4
    c.model.width = 64
    c.model.res_blocks = 2
    c.model.latent_dim = 4
    c.model.disc_start = 5000
    c.model.disc_weight = 0.5  # latent diffusion's kl-f4 setting
    c.train.lr = 1e-4
    c.train.disc_lr = 1e-4
    c.train.steps = 50000
    c.train.batch_size = 16
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.eval.every = 2000
    # Scores need a feature net: a folder has no labels for the domain classifier, so
    # InceptionV3 from a local weights file (docs/inception_weights.md); then
    # --config.eval.scores=True. Without it: reconstruction grids only.
    c.eval.feature_net = "inception"
    c.eval.inception_weights = "~/genimg_weights/inception_fid.npz"
    c.eval.scores = False
    c.eval.best_metric = ""
    if arg == "quick":
        shrink_for_tests(c)
        c.model.disc_start = 4
    return c
