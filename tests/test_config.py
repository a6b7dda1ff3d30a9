"""Config validation: every shipped config is valid; bad values name the field and the fix."""

import pytest
from conftest import load_config

from genimg_jax.config import ConfigError, validate

CONFIGS = ["dcgan_mnist", "vae_mnist", "beta_vae_shapes"]
SHARED_FIELDS = [
    "seed",
    "model.family",
    "data.name",
    "train.steps",
    "train.batch_size",
    "train.log_every",
    "train.checkpoint_every",
    "eval.every",
]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "quick"])
def test_shipped_configs_are_valid_and_share_field_names(name, arg):
    config = validate(load_config(name, arg))
    for field in SHARED_FIELDS:
        node = config
        for part in field.split("."):
            node = node[part]
    kind_fields = (
        ["train.g_lr", "train.d_lr"]
        if "gan" in name and "vae" not in name
        else ["model.beta", "train.lr"]
    )
    for field in kind_fields:
        section, key = field.split(".")
        assert key in config[section]


BAD = [
    ("dcgan_mnist", "model.family", "stylegan9", "known families"),
    ("dcgan_mnist", "train.g_lr", 0.0, "train.g_lr"),
    ("dcgan_mnist", "train.d_lr", -1e-3, "train.d_lr"),
    ("dcgan_mnist", "train.loss", "hinge_typo", "train.loss"),
    ("dcgan_mnist", "train.ema_decay", 1.0, "train.ema_decay"),
    ("dcgan_mnist", "data.image_size", 48, "data.image_size"),
    ("dcgan_mnist", "data.channels", 2, "data.channels"),
    ("dcgan_mnist", "train.batch_size", 0, "train.batch_size"),
    ("dcgan_mnist", "train.steps", -5, "train.steps"),
    ("dcgan_mnist", "train.optimizer", "adamax", "train.optimizer"),
    ("dcgan_mnist", "train.b1", 1.5, "train.b1"),
    ("vae_mnist", "model.beta", -1.0, "model.beta"),
    ("vae_mnist", "model.beta", float("nan"), "model.beta"),
    ("vae_mnist", "train.lr", float("inf"), "train.lr"),
    ("vae_mnist", "train.reconstruction", "gaussian_typo", "train.reconstruction"),
    ("vae_mnist", "train.schedule", "linear", "train.schedule"),
    ("vae_mnist", "eval.every", 0, "eval.every"),
    ("vae_mnist", "model.latent_dim", 0, "model.latent_dim"),
]


@pytest.mark.parametrize("name,field,value,expected", BAD)
def test_bad_value_fails_naming_the_field(name, field, value, expected):
    config = load_config(name)
    section, key = field.split(".")
    with config.unlocked():
        config[section][key] = value
    with pytest.raises(ConfigError, match=expected) as info:
        validate(config)
    assert field in str(info.value) or expected == "known families"


def test_missing_field_is_reported():
    config = load_config("vae_mnist")
    del config.train["lr"]
    with pytest.raises(ConfigError, match="train.lr is missing"):
        validate(config)
