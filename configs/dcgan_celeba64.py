"""DCGAN on CelebA faces at 64x64 (TFDS `celeb_a`: needs the internet and TensorFlow to prepare
once; `genimg prepare --data celeb_a` on a machine with both, then copy the data dir).

genimg train --config configs/dcgan_celeba64.py --workdir runs/dcgan_celeba64
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("dcgan")
    c.data.name = "celeb_a"
    c.data.eval_split = "test"
    c.data.image_size = 64  # centre-cropped from 218x178 and resized
    c.data.channels = 3
    c.model.latent_dim = 100
    c.model.g_width = 64
    c.model.d_width = 64
    c.train.steps = 50000
    c.train.batch_size = 128
    c.train.log_every = 100
    c.train.checkpoint_every = 5000
    c.eval.every = 5000
    c.eval.feature_net = "inception"  # FID on InceptionV3 features, comparable with papers
    c.eval.inception_weights = "~/genimg_weights/inception_fid.npz"  # docs/inception_weights.md
    c.eval.examples = 10000
    if arg == "quick":
        shrink_for_tests(c)
    return c
