"""The seed's own task: an unconditional DCGAN on the bundled MNIST digits (no labels, offline),
within the main job's budget (≤ 10 minutes on 2 cores, 4,000 training digits, nothing
pretrained). Its settings come from the search below (docs/gans_on_little_data.md).

genimg train  --config configs/dcgan_mnist_uncond.py --workdir runs/uncond
genimg sweep  --config configs/dcgan_mnist_uncond.py:search --workdir runs/uncond_search
genimg sweep  --config configs/dcgan_mnist_uncond.py:full --workdir runs/uncond_full
genimg sweep  --config configs/dcgan_mnist_uncond.py:diversity --workdir runs/uncond_diversity
genimg report runs/uncond_search; genimg report runs/uncond_full; genimg report runs/uncond_diversity
"""

import os

from genimg_jax.config import from_file, shrink_for_tests

MAIN_JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcgan_mnist.py")


def get_config(arg: str | None = None):
    c = from_file(MAIN_JOB)  # the main job's networks, rates, steps and intervals ...
    c.model.num_classes = 0  # ... without labels
    if arg in ("search", "full"):  # the search's base: the main job, unconditional
        c.train.steps = 2500 if arg == "search" else 5000  # the screen at half the steps
        return c
    c.model.latent_codes = 10  # what the search found (docs/gans_on_little_data.md)
    c.train.loss = "hinge"
    c.train.b1, c.train.b2 = 0.0, 0.99
    c.eval.num_samples = 100  # a 10 x 10 grid: one code per column
    if arg == "diversity":  # the second search's base: the first one's winner
        return c
    c.train.mode_seeking = 0.05  # what the second search found
    c.eval.every = 2500  # two evaluations, to stay within the 10 minutes
    if arg == "quick":
        shrink_for_tests(c)
    return c


def get_sweep(arg: str | None = None):
    """`search`: one knob at a time from the unconditional main job's settings, each a knob the
    small-data GAN literature names (12 members at 2,500 steps); `full`: the screen's winners
    combined, at the full 5,000 steps (5 members); `quick`: two learning rates."""
    from genimg_jax.sweeps.spec import axis, chain

    if arg == "quick":
        return axis("train.d_lr", [4e-4, 8e-4])
    if arg == "diversity":
        return chain(
            [{}],  # the first search's winner
            [{"model.latent_continuous": 2}],  # InfoGAN's continuous codes, as on its MNIST
            [{"train.ema_decay": 0.99}],  # a 10x shorter EMA
            axis("train.mode_seeking", [0.05, 0.1, 0.25, 1.0]),  # MSGAN's term
            [{"train.mode_seeking": 0.1, "train.info_weight": 2.0}],
        )
    if arg == "full":
        info = {"model.latent_codes": 10, "train.loss": "hinge"}
        adam = {"train.b1": 0.0, "train.b2": 0.99}
        return [
            info,
            info | {"train.info_weight": 0.5},
            info | adam,  # get_config()'s settings
            info | adam | {"model.latent_codes": 20},
            info | adam | {"model.latent_dim": 128},
        ]
    return chain(
        [{}],  # the settings above
        axis("train.loss", ["hinge"]),
        [{"train.r1_gamma": 0.05, "train.r1_interval": 4}],  # lazy R1
        axis("train.augment", ["translation"]),  # DiffAugment's shifts alone
        [{"train.ema_kimg": 10.0, "train.ema_rampup": 0.05}],  # StyleGAN2's EMA
        [{"train.g_lr": 2e-4, "train.d_lr": 4e-4}],  # TTUR
        [{"train.b1": 0.0, "train.b2": 0.99}],
        [{"model.g_width": 128, "model.d_width": 96}],
        axis("train.d_steps", [2]),
        [{"model.family": "resnet_gan", "train.loss": "hinge"}],
        axis("model.latent_codes", [10]),  # InfoGAN's categorical code
        [{"model.latent_codes": 10, "train.loss": "hinge"}],
    )
