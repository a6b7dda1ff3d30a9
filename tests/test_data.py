"""The input pipeline: deterministic, every example once per epoch, images fitted and scaled."""

import os

import numpy as np
import pytest
from conftest import REPO

from genimg_jax.cli.main import main as cli
from genimg_jax.data import pipeline


@pytest.mark.parametrize("n,batch", [(10, 3), (12, 4), (7, 16)])
def test_every_example_once_per_epoch(n, batch):
    epochs = 3
    steps = -(-epochs * n // batch)
    seen = np.concatenate([pipeline.example_indices(5, s, batch, n) for s in range(steps)])
    for e in range(epochs):
        assert sorted(seen[e * n : (e + 1) * n]) == list(range(n))  # a permutation per epoch
    assert not np.array_equal(seen[:n], seen[n : 2 * n])  # reshuffled between epochs


def test_indices_are_a_pure_function_of_seed_and_step():
    first = {s: pipeline.example_indices(0, s, 8, 100) for s in (5, 0, 37)}
    pipeline._epoch_permutation.cache_clear()
    again = {s: pipeline.example_indices(0, s, 8, 100) for s in (37, 5, 0)}  # other order
    assert all(np.array_equal(first[s], again[s]) for s in first)
    assert not np.array_equal(pipeline.example_indices(1, 5, 8, 100), first[5])


def test_fit_images_pads_small_images_in_the_centre():
    images = np.full((2, 28, 28, 1), 255, np.uint8)
    out = pipeline.fit_images(images, 32, 1)
    assert out.shape == (2, 32, 32, 1)
    assert out[:, 2:30, 2:30].min() == 255 and out.sum() == images.sum()


def test_fit_images_crops_and_resizes_large_images_and_tiles_grey_to_rgb():
    images = np.zeros((1, 80, 64, 1), np.uint8)
    images[:, 8:72] = 200  # the centre 64x64 square
    out = pipeline.fit_images(images, 32, 3)
    assert out.shape == (1, 32, 32, 3)
    assert np.all(out == 200)


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_scale_images_maps_0_255_to_the_range(value_range):
    out = pipeline.scale_images(np.array([0, 255], np.uint8), value_range)
    np.testing.assert_allclose(out, value_range, rtol=0, atol=1e-6)
    assert out.dtype == np.float32


@pytest.fixture(scope="module")
def mnist(data_dir):
    return pipeline.load_split("bundled_mnist", "train", data_dir)


def test_batches_on_bundled_mnist_are_deterministic_and_sharded_by_process(mnist):
    kwargs = {
        "seed": 3,
        "batch_size": 8,
        "image_size": 32,
        "channels": 1,
        "value_range": (-1.0, 1.0),
    }
    full = pipeline.Batches(mnist, **kwargs)
    assert len(mnist) == 4000
    b = full[17]
    assert b["image"].shape == (8, 32, 32, 1) and b["label"].shape == (8,)
    assert b["image"].min() == -1.0 and b["image"].max() == 1.0
    streamed = list(pipeline.Batches(mnist, **kwargs).iterate(15, 18))
    np.testing.assert_array_equal(streamed[2]["image"], b["image"])
    halves = [
        pipeline.Batches(mnist, process_index=i, process_count=2, **kwargs)[17] for i in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate([h["image"] for h in halves]), b["image"])


def test_several_draws_per_step_are_the_one_draw_stream_interleaved(mnist):
    """`draws=3` (a GAN critic's d_steps): draw k of step s is the one-draw batch of step 3s + k,
    for the whole batch and for each process's rows, so it stays a pure function of (seed, s)."""
    kwargs = {"seed": 3, "batch_size": 8, "image_size": 32, "channels": 1, "value_range": (0, 1)}
    one, three = pipeline.Batches(mnist, **kwargs), pipeline.Batches(mnist, draws=3, **kwargs)
    for step in (0, 5, 499):  # 499 crosses an epoch (4,000 images / 8 = 500 one-draw steps)
        b = three[step]
        assert b["image"].shape == (8, 3, 32, 32, 1) and b["label"].shape == (8, 3)
        for k in range(3):
            np.testing.assert_array_equal(b["image"][:, k], one[3 * step + k]["image"])
            np.testing.assert_array_equal(b["label"][:, k], one[3 * step + k]["label"])
    halves = [
        pipeline.Batches(mnist, draws=3, process_index=i, process_count=2, **kwargs)[7]
        for i in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate([h["image"] for h in halves]), three[7]["image"])


def test_standard_data_set_that_cannot_be_prepared_says_how(tmp_path):
    with pytest.raises(pipeline.DataError, match="genimg prepare --data mnist"):
        pipeline.load_split("mnist", "train", str(tmp_path))


def test_an_unknown_data_set_name_is_one_line_naming_close_names_and_exits_2(tmp_path, capsys):
    """The repro of issue #22: a misspelt name used to end in TFDS's traceback listing every
    data set (exit 1)."""
    argv = ["genimg", "train", "--config", os.path.join(REPO, "configs", "vae_mnist.py:quick")]
    argv += ["--workdir", str(tmp_path / "w"), "--config.data.name=bundled_mnst"]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "data.name='bundled_mnst' is not a data set" in err
    assert "close names: bundled_mnist" in err
    with pytest.raises(pipeline.DataError, match="close names: mnist"):
        pipeline.prepare("mnsit", str(tmp_path))


def test_a_split_is_decoded_once_per_process_and_again_when_its_files_change(tmp_path):
    data_dir = str(tmp_path)
    first = pipeline.load_split("bundled_mnist", "test", data_dir)
    assert pipeline.load_split("bundled_mnist", "test", data_dir) is first  # kept, not re-read
    assert not first.images.flags.writeable  # shared: nobody may change it for the others
    assert pipeline.load_split("bundled_mnist", "train", data_dir) is not first
    (prepared,) = {d for d, _, files in os.walk(data_dir) if "dataset_info.json" in files}
    record = next(f for f in os.listdir(prepared) if "test.array_record" in f)
    os.utime(os.path.join(prepared, record))  # the data set rewritten in place
    again = pipeline.load_split("bundled_mnist", "test", data_dir)
    assert again is not first
    np.testing.assert_array_equal(again.images, first.images)
