"""VQGAN on the procedural 64-px shapes: 16×16 codes of a 256-entry codebook (f = 4), L1 (and
LPIPS when its weights are at eval.lpips_weights), a PatchGAN of 3 layers from step 1,000.
The shapes have no labels for a domain classifier, so offline there is no perceptual term and
no rFID: scored by PSNR and SSIM, the best checkpoint by PSNR (rFID with
`--config.eval.feature_net=inception` and its weights file, docs/inception_weights.md).

genimg train --config configs/vqgan_shapes.py --workdir runs/vqgan_shapes
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("vqgan")
    c.data.name = "shapes"
    c.data.image_size = 64
    c.model.downsample = 4
    c.model.width = 32
    c.model.res_blocks = 1
    c.model.latent_dim = 32
    c.model.codebook_size = 256
    c.model.disc_width = 32
    c.model.disc_layers = 3
    c.model.disc_start = 1000
    c.train.lr = 2e-4
    c.train.disc_lr = 2e-4
    c.train.steps = 4000
    c.train.batch_size = 16
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    c.eval.feature_net = "none"  # no labels for the domain classifier (docstring)
    c.eval.best_metric = "psnr"
    if arg == "quick":
        c.data.image_size = 32
        shrink_for_tests(c)
        c.model.disc_start = 4
    return c
