"""Class-conditional GANs (`model.num_classes` > 0): G takes a class (embedding concatenated to
z in DCGAN, conditional BatchNorm in the ResNet G), D adds a projection term; fake labels are
drawn uniformly per example from one global draw; sample grids show the classes in order. Also
the pipeline's statically binarised pixels (`data.binarize`)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled_state, load_config

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core import losses
from genimg_jax.data import pipeline
from genimg_jax.families.gan import step as gan_step
from genimg_jax.models.common import fixed_labels
from genimg_jax.training import loop as trainer

FAMILIES = {"dcgan": "dcgan_mnist", "resnet_gan": "sngan_cifar10"}


def _conditional(name: str, num_classes: int = 10):
    config = load_config(name)
    config.model.num_classes = num_classes
    config.parallel.num_devices = 1
    return config_lib.validate(config)


def test_fixed_labels_cycle_through_the_classes_in_order():
    np.testing.assert_array_equal(fixed_labels(25, 10), np.arange(25) % 10)
    assert fixed_labels(4, 10).dtype == jnp.int32
    np.testing.assert_array_equal(fixed_labels(4, 0), np.zeros(4))  # unconditional


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def conditional(request):
    config = _conditional(FAMILIES[request.param])
    s = compiled_state(config)
    return request.param, config, s


def test_conditional_d_output_changes_with_the_label(conditional):
    _, config, s = conditional
    size, channels = config.data.image_size, config.data.channels
    x = jax.random.uniform(jax.random.key(1), (4, size, size, channels), minval=-1, maxval=1)
    d = jax.jit(lambda labels: s.d.apply_fn(s.d.variables(), x, labels))  # one program
    out = {y: np.asarray(d(jnp.full((4,), y, jnp.int32))) for y in range(3)}
    assert out[0].shape == (4,)
    assert np.all(out[0] != out[1]) and np.all(out[1] != out[2])


def test_unconditional_models_have_no_class_parameters():
    for name in FAMILIES.values():
        config = load_config(name)
        config.model.num_classes = 0  # the main job, dcgan_mnist, is conditional
        # the parameter tree's paths, abstractly: nothing needs computing
        s = jax.eval_shape(functools.partial(families.create_state, config), jax.random.key(0))
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(s)]
        assert not [p for p in paths if "Embed" in p], name


def test_a_conditional_step_without_labels_says_what_to_do(conditional):
    _, config, s = conditional
    size, channels = config.data.image_size, config.data.channels
    batch = {"image": jnp.zeros((4, size, size, channels))}
    step = families.make_train_step(config)
    with pytest.raises(ValueError, match="model.num_classes=10 needs labelled data"):
        jax.eval_shape(step, s, batch, jax.random.key(0))


@pytest.fixture(scope="module")
def trained(conditional):
    """Two conditional training steps (jit) from the initial state."""
    name, config, s = conditional
    size, channels, b = config.data.image_size, config.data.channels, 8
    batch = {
        "image": jax.random.uniform(jax.random.key(1), (b, size, size, channels), minval=-1),
        "label": jnp.arange(b, dtype=jnp.int32) % 10,
    }
    step = jax.jit(families.make_train_step(config))
    new, _ = step(s, batch, jax.random.key(3))
    new, metrics = step(new, batch, jax.random.key(3))
    return name, config, s, new, metrics


def test_conditional_steps_train_every_class_parameter(trained):
    name, _, s, new, metrics = trained
    assert all(np.isfinite(float(v)) for v in metrics.values())
    for net in ("g", "d"):
        before, after = getattr(s, net).params, getattr(new, net).params
        embeds = [
            (jax.tree_util.keystr(p), np.asarray(v), np.asarray(w))
            for (p, v), (_, w) in zip(
                jax.tree_util.tree_leaves_with_path(before),
                jax.tree_util.tree_leaves_with_path(after),
                strict=True,
            )
            if "Embed" in jax.tree_util.keystr(p)
        ]
        assert embeds, f"{name} {net} has no class embedding"
        for path, v, w in embeds:
            assert not np.array_equal(v, w), f"{name} {net}{path} did not train"


def test_conditional_g_images_depend_on_the_class(trained):
    # (the ResNet G's conditional BatchNorm starts at scale 1, shift 0 for every class, as in
    # the papers, so its classes part after the first updates)
    _, config, _, s, _ = trained
    z = jax.random.normal(jax.random.key(2), (4, config.model.latent_dim))

    @jax.jit  # one program, not every layer's ops one by one
    def images(variables, z):
        g = lambda *y: s.g.apply_fn(variables, z, *y, train=False)
        # the last one's labels are made in the program as G's own default makes them
        # (`fixed_labels`), so the last two compute the same ops when (and only when) G without
        # labels draws the classes in order
        return (
            g(jnp.zeros(4, jnp.int32)),
            g(jnp.full((4,), 7, jnp.int32)),
            g(),
            g(fixed_labels(4, 10)),
        )

    a, b, unlabelled, in_order = map(np.asarray, images(s.g.variables(), z))
    assert a.shape == (4, config.data.image_size, config.data.image_size, config.data.channels)
    assert all(np.abs(a[i] - b[i]).max() > 1e-4 for i in range(4))
    # without labels (sampling grids), G draws the classes in order
    np.testing.assert_array_equal(unlabelled, in_order)


def test_fake_labels_are_one_global_draw_sliced_per_device():
    config = _conditional("dcgan_mnist")
    n, rows = 4, 3
    if len(jax.local_devices()) < n:
        pytest.skip("needs 4 devices (tests/conftest.py asks for 8 host CPU devices)")
    batch = {"image": jnp.zeros((n * rows, 1))}
    rng = jax.random.key(4)
    whole = gan_step._fake_labels(rng, batch, config.model.num_classes, None)
    sliced = jax.pmap(
        lambda image: gan_step._fake_labels(rng, {"image": image}, 10, "data"),
        axis_name="data",
        devices=jax.local_devices()[:n],
    )(batch["image"].reshape(n, rows, 1))
    np.testing.assert_array_equal(np.asarray(sliced).reshape(-1), whole)
    assert whole.dtype == jnp.int32 and 0 <= int(whole.min()) and int(whole.max()) < 10


def test_conditional_d_step_under_pmap_equals_jit():
    config = _conditional("dcgan_mnist")
    config.train.gp_weight = 1.0  # the interpolation weights are sliced per device too
    n, b = 4, 8
    if len(jax.local_devices()) < n:
        pytest.skip("needs 4 devices (tests/conftest.py asks for 8 host CPU devices)")
    pmap_config = config.copy_and_resolve_references()
    pmap_config.parallel.strategy = "pmap"  # G's BatchNorm takes statistics over all devices
    # both initial states in one compiled program, from the same key
    s, s_pmap = jax.jit(
        lambda key: (families.create_state(config, key), families.create_state(pmap_config, key))
    )(jax.random.key(0))
    batch = {
        "image": jax.random.uniform(jax.random.key(1), (b, 28, 28, 1), minval=-1),
        "label": jnp.arange(b, dtype=jnp.int32) % 10,
    }
    spec = gan_step.GANStep(
        loss=losses.GAN_LOSSES["wasserstein"],
        latent_dim=config.model.latent_dim,
        ema=gan_step.EMA(0.0, 0.0, 0.0),
        num_classes=10,
        gp_weight=1.0,
    )
    step = functools.partial(gan_step.d_step, spec=spec)
    rng = jax.random.key(5)
    single, m1 = jax.jit(step)(s, batch, rng)
    shards = jax.tree.map(lambda x: np.asarray(x).reshape(n, b // n, *x.shape[1:]), batch)
    multi, m2 = jax.pmap(  # the state broadcast to every device, each device's state returned
        functools.partial(step, axis_name="data"),
        axis_name="data",
        in_axes=(None, 0, None),
        devices=jax.local_devices()[:n],
    )(s_pmap, shards, rng)
    for key in ("d_loss", "d_gp", "d_real", "d_fake"):
        np.testing.assert_allclose(m2[key][0], m1[key], rtol=1e-5, err_msg=key)
    jax.tree.map(
        lambda a, c: np.testing.assert_allclose(a[0], c, rtol=1e-4, atol=1e-6),
        multi.d.params,
        single.d.params,
    )


def test_conditional_quick_config_trains_through_the_loop(tmp_path):
    config = _conditional("dcgan_mnist")
    config.train.steps = 6
    final = trainer.train_and_evaluate(config, str(tmp_path))
    assert int(final.step) == 6
    assert (tmp_path / "samples" / "samples_000006.png").exists()
    assert "Embed_0" in final.g.params and "Embed_0" in final.d.params


# --------------------------------------------------------------------------------------------
# data.binarize: pixels thresholded at the middle of the value range, statically.


def test_binarised_batches_hold_only_the_two_extremes():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    source = pipeline.ArraySource(images, np.arange(40) % 10)
    common = {"seed": 3, "batch_size": 8, "image_size": 28, "channels": 1}
    for value_range in [(0.0, 1.0), (-1.0, 1.0)]:
        grey = pipeline.Batches(source, value_range=value_range, **common)
        binary = pipeline.Batches(source, value_range=value_range, binarize=True, **common)
        for step in (0, 7):
            x, xb = grey[step]["image"], binary[step]["image"]
            middle = sum(value_range) / 2
            np.testing.assert_array_equal(
                xb, np.where(x >= middle, *map(np.float32, value_range[::-1]))
            )
            assert set(np.unique(xb)) == set(value_range) and xb.dtype == np.float32
            np.testing.assert_array_equal(binary[step]["label"], grey[step]["label"])
    assert pipeline.Batches(source, value_range=(0.0, 1.0), **common).binarize is False


def test_binary_vae_config_asks_for_binarised_data():
    for arg in (None, "quick"):
        config = config_lib.validate(load_config("vae_binary_mnist", arg))
        assert config.data.binarize is True and config.train.reconstruction == "bernoulli"
