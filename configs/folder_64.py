"""Your own images at 64x64: a template. Point it at a folder of PNG/JPEG/WebP/BMP/GIF files (any
size and mode; subfolders allowed), or at a .npz/.npy of images with data.name="arrays":

genimg train --config configs/folder_64.py --workdir runs/mine --config.data.path=/path/to/images
genimg train --config configs/folder_64.py:quick --workdir /tmp/quick --config.data.path=DIR

The folder is prepared once (decoded, centre-cropped, resized, written as array_record under the
TFDS data dir) and reused while it is unchanged; about one image in ten is held out as `test`
for the scores. With class subfolders, --config.data.labels_from_folders=True and
--config.model.num_classes=<number of subfolders> train a class-conditional GAN.
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("dcgan")
    c.data.name = "folder"
    c.data.path = ""  # required: --config.data.path=/path/to/images
    c.data.image_size = 64
    c.data.channels = 3
    c.model.latent_dim = 128
    c.model.g_width = 64
    c.model.d_width = 64
    c.train.steps = 20000
    c.train.batch_size = 64
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.eval.every = 2000
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
