"""StyleGAN2 on your own images at 64x64: a template, like `folder_64.py` for DCGAN. Point it
at a folder of PNG/JPEG/WebP/BMP/GIF files (any size and mode; subfolders allowed):

genimg train --config configs/stylegan2_folder64.py --workdir runs/mine --config.data.path=DIR
genimg train --config configs/stylegan2_folder64.py:quick --workdir /tmp/q --config.data.path=DIR

StyleGAN2's recipe (the family's defaults) at 64 px: 4 -> 8 -> 16 -> 32 -> 64 with 512, 512, 256,
128, 64 channels (channel_base 4096), an 8-layer mapping network, R1 γ = 0.05 (StyleGAN2-ADA's
heuristic 0.0002·64²/64 is 0.013; small sets need more), path-length regularisation, style
mixing, and ADA (`blit,geom`), since a folder is usually a few thousand images. The prepared
folder, its held-out `test` split and the InceptionV3 scores work as for `folder_64.py`.
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("stylegan2")
    c.data.name = "folder"
    c.data.path = ""  # required: --config.data.path=/path/to/images
    c.data.image_size = 64
    c.data.channels = 3
    c.model.g_width = c.model.d_width = 64  # channels: 64 at 64 px, doubling down to 512
    c.train.r1_gamma = 0.05
    c.train.ada = "blit,geom"
    c.train.ada_kimg = 100.0
    c.train.steps = 100_000
    c.train.batch_size = 32
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.eval.every = 5000
    # Scores need a feature network: a folder has no labels for the domain classifier, so
    # InceptionV3 from a local weights file (docs/inception_weights.md); then
    # --config.eval.scores=True --config.eval.best_metric=fid. Without it: sample grids only.
    c.eval.feature_net = "inception"
    c.eval.inception_weights = "~/genimg_weights/inception_fid.npz"
    c.eval.scores = False
    c.eval.best_metric = ""
    if arg == "quick":
        shrink_for_tests(c)
    return c
