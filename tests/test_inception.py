"""The FID Inception-v3 on random weights (no real weights exist offline): key names and shapes,
loading and its errors, the .pth -> .npz converter, and the network against an independent
plain-PyTorch implementation of pytorch-fid's FIDInception blocks (torchvision-free) fed the same
state dict: one conv-BN-ReLU, every kind of Inception block, and the whole network end to end."""

import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from genimg_jax.features import inception

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TENSORS = 94 * 5 + 2  # 94 conv-BN units × (conv.weight, bn.{weight, bias, mean, var}) + fc


def _random_state(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 arrays of every expected key and shape, scaled so activations stay O(1)
    through the 94 layers (He-scaled convs, BN statistics near mean 0 / variance 1). Drawn in
    float32: the 24 M float64 draws took 4x as long."""
    rng = np.random.default_rng(seed)

    def normal(shape, scale):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)

    out = {}
    for key, shape in inception.expected_shapes().items():
        if key.endswith("conv.weight"):
            out[key] = normal(shape, math.sqrt(2.0 / math.prod(shape[1:])))
        elif key.endswith(("bn.weight", "bn.running_var")):
            out[key] = rng.random(shape, dtype=np.float32) + np.float32(0.5)  # U[0.5, 1.5)
        elif key == "fc.weight":
            out[key] = normal(shape, 1 / math.sqrt(shape[1]))
        else:  # bn.bias, bn.running_mean, fc.bias
            out[key] = normal(shape, 0.1)
    return out


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return _random_state()


@pytest.fixture(scope="module")
def weights_file(state, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("inception") / "inception_fid.npz")
    np.savez(path, **state)
    return path


@pytest.fixture(scope="module")
def variables(weights_file):
    return inception.load_weights(weights_file)


def _images(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Keys and shapes


def test_expected_shapes_lists_every_tensor_of_pytorch_fid():
    shapes = inception.expected_shapes()
    assert len(shapes) == NUM_TENSORS
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Conv2d_4a_3x3.bn.running_var"] == (192,)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert shapes["Mixed_6b.branch7x7_3.conv.weight"] == (192, 128, 7, 1)
    assert shapes["Mixed_7b.branch3x3dbl_1.conv.weight"] == (448, 1280, 1, 1)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["fc.weight"] == (1008, 2048)
    assert shapes["fc.bias"] == (1008,)
    assert not any(k.startswith("AuxLogits") or "num_batches" in k for k in shapes)
    assert list(shapes)[:2] == ["Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.weight"]


# --------------------------------------------------------------------------------------------
# Loading and features


def test_load_weights_puts_every_tensor_in_flax_layout(state, variables):
    p, s = variables["params"], variables["batch_stats"]
    w = state["Mixed_6b.branch7x7_2.conv.weight"]  # [O, I, 1, 7]: H and W must not swap
    np.testing.assert_array_equal(
        p["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"], w.transpose(2, 3, 1, 0)
    )
    assert p["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"].shape == (1, 7, 128, 128)
    np.testing.assert_array_equal(
        p["Mixed_5b"]["branch1x1"]["bn"]["scale"], state["Mixed_5b.branch1x1.bn.weight"]
    )
    np.testing.assert_array_equal(
        s["Mixed_5b"]["branch1x1"]["bn"]["var"], state["Mixed_5b.branch1x1.bn.running_var"]
    )
    np.testing.assert_array_equal(p["fc"]["kernel"], state["fc.weight"].T)
    assert len(jax.tree.leaves(variables)) == NUM_TENSORS


def test_features_shape_range_determinism_and_batching(variables):
    images = _images(3, 32)
    feats, logits = inception.features_and_logits(variables, images, batch_size=2)  # 2 batches
    assert feats.shape == (3, 2048) and feats.dtype == np.float32
    assert logits.shape == (3, 1008)
    assert np.isfinite(feats).all() and np.isfinite(logits).all()
    assert (feats >= 0).all()  # the mean of ReLU outputs
    assert feats.std() > 0 and not np.allclose(feats[0], feats[1])
    again = inception.features(variables, images[:2], batch_size=2)  # the same compiled program
    np.testing.assert_array_equal(again, feats[:2])  # deterministic, batch-independent rows
    grey = inception.features(variables, images[:2, :, :, :1], batch_size=2)
    rgb = np.repeat(images[:2, :, :, :1], 3, axis=-1)
    np.testing.assert_allclose(grey, inception.features(variables, rgb, 2), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        inception.features(variables, images * 255.0)


# --------------------------------------------------------------------------------------------
# Errors


def _expect_load_error(tmp_path, arrays, *needles):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as info:
        inception.load_weights(path)
    for needle in (str(path), "convert", *needles):
        assert needle in str(info.value)


def test_missing_extra_and_misshapen_keys_are_named(state, tmp_path):
    missing = {k: v for k, v in state.items() if k != "Mixed_6c.branch7x7dbl_4.bn.running_mean"}
    _expect_load_error(tmp_path, missing, "missing", "Mixed_6c.branch7x7dbl_4.bn.running_mean")
    wrong = {**state, "Mixed_5b.branch5x5_2.conv.weight": np.zeros((64, 48, 3, 3), np.float32)}
    _expect_load_error(tmp_path, wrong, "Mixed_5b.branch5x5_2.conv.weight", "(64, 48, 5, 5)")
    extra = {**state, "AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)}
    _expect_load_error(tmp_path, extra, "unexpected", "AuxLogits.fc.weight", "torchvision")
    nan = {**state, "fc.bias": np.full((1008,), np.nan, np.float32)}
    _expect_load_error(tmp_path, nan, "fc.bias", "NaN")
    # BatchNorm step counters, as a raw PyTorch state dict holds them, are ignored.
    counters = {"Conv2d_1a_3x3.bn.num_batches_tracked": np.array(0, np.int64)}
    np.savez(tmp_path / "ok.npz", **state, **counters)
    inception.load_weights(tmp_path / "ok.npz")


def test_missing_file_names_the_path_and_how_to_obtain_it(tmp_path):
    path = tmp_path / "nowhere" / "inception_fid.npz"
    with pytest.raises(FileNotFoundError) as info:
        inception.load_weights(path)
    message = str(info.value)
    for needle in (str(path), "pytorch-fid", inception.FID_WEIGHTS_FILE, "convert"):
        assert needle in message
    (tmp_path / "w.pth").write_bytes(b"not really")
    with pytest.raises(ValueError, match="convert"):
        inception.load_weights(tmp_path / "w.pth")


def test_convert_says_torch_is_needed_when_it_is_absent(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs torch"):
        inception.convert(tmp_path / "in.pth", tmp_path / "out.npz")


def test_package_never_imports_torch():
    code = (
        "import sys; from genimg_jax.features import inception; inception.expected_shapes(); "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0


# --------------------------------------------------------------------------------------------
# Against plain PyTorch (skipped only where torch is not importable)


def _torch():
    return pytest.importorskip("torch", reason="torch not importable: no PyTorch reference")


def test_convert_round_trip_from_a_pth_state_dict(tmp_path):
    torch = _torch()
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=gen) for k, s in inception.expected_shapes().items()}
    for k in [k for k in sd if k.endswith("bn.running_var")]:
        sd[k.replace("running_var", "num_batches_tracked")] = torch.tensor(0)  # as BN saves
    torch.save(sd, tmp_path / "fid.pth")
    out = tmp_path / "sub" / "fid.npz"
    cli = [sys.executable, "-m", "genimg_jax.cli.main", "inception-weights", "convert"]
    done = subprocess.run(
        [*cli, str(tmp_path / "fid.pth"), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    v = inception.load_weights(out)
    p, s = v["params"], v["batch_stats"]
    conv = p["Conv2d_1a_3x3"]["conv"]["kernel"]  # HWIO [3, 3, 3, 32]
    np.testing.assert_array_equal(conv[2, 1, 0, 5], sd["Conv2d_1a_3x3.conv.weight"][5, 0, 2, 1])
    k17 = p["Mixed_6c"]["branch7x7dbl_3"]["conv"]["kernel"]  # (1, 7): [1, 7, 160, 160]
    np.testing.assert_array_equal(
        k17, sd["Mixed_6c.branch7x7dbl_3.conv.weight"].permute(2, 3, 1, 0)
    )
    k31 = p["Mixed_7b"]["branch3x3_2b"]["conv"]["kernel"]  # (3, 1): [3, 1, 384, 384]
    np.testing.assert_array_equal(k31, sd["Mixed_7b.branch3x3_2b.conv.weight"].permute(2, 3, 1, 0))
    np.testing.assert_array_equal(
        s["Mixed_7c"]["branch_pool"]["bn"]["mean"], sd["Mixed_7c.branch_pool.bn.running_mean"]
    )
    np.testing.assert_array_equal(
        p["Mixed_7c"]["branch_pool"]["bn"]["bias"], sd["Mixed_7c.branch_pool.bn.bias"]
    )
    np.testing.assert_array_equal(p["fc"]["kernel"], sd["fc.weight"].T)
    np.testing.assert_array_equal(p["fc"]["bias"], sd["fc.bias"])
    # A state dict missing a key does not convert, and the error names the key.
    del sd["Mixed_5d.branch3x3dbl_2.bn.weight"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"Mixed_5d\.branch3x3dbl_2\.bn\.weight"):
        inception.convert(tmp_path / "bad.pth", tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


class _TorchFID:
    """pytorch-fid's FID Inception-v3 (torchvision Inception3 with FIDInceptionA/C/E_1/E_2,
    aux_logits=False, 1008 classes) in plain torch.nn.functional ops, NCHW, read straight from
    a state dict."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.torch = _torch()
        self.F = self.torch.nn.functional
        self.sd = {k: self.torch.from_numpy(v) for k, v in state.items()}

    def conv(self, x, name, stride=1, padding=0):
        sd, F = self.sd, self.F
        x = F.conv2d(x, sd[f"{name}.conv.weight"], stride=stride, padding=padding)
        x = F.batch_norm(
            x,
            sd[f"{name}.bn.running_mean"],
            sd[f"{name}.bn.running_var"],
            sd[f"{name}.bn.weight"],
            sd[f"{name}.bn.bias"],
            training=False,
            eps=0.001,
        )
        return F.relu(x)

    def avg_pool(self, x):
        return self.F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    def block_a(self, x, n):
        c = self.conv
        b1 = c(x, f"{n}.branch1x1")
        b5 = c(c(x, f"{n}.branch5x5_1"), f"{n}.branch5x5_2", padding=2)
        b3 = c(x, f"{n}.branch3x3dbl_1")
        b3 = c(c(b3, f"{n}.branch3x3dbl_2", padding=1), f"{n}.branch3x3dbl_3", padding=1)
        bp = c(self.avg_pool(x), f"{n}.branch_pool")
        return self.torch.cat([b1, b5, b3, bp], 1)

    def block_b(self, x, n):
        c = self.conv
        b3 = c(x, f"{n}.branch3x3", stride=2)
        bd = c(c(x, f"{n}.branch3x3dbl_1"), f"{n}.branch3x3dbl_2", padding=1)
        bd = c(bd, f"{n}.branch3x3dbl_3", stride=2)
        return self.torch.cat([b3, bd, self.F.max_pool2d(x, 3, stride=2)], 1)

    def block_c(self, x, n):
        c = self.conv
        b1 = c(x, f"{n}.branch1x1")
        b7 = c(x, f"{n}.branch7x7_1")
        b7 = c(b7, f"{n}.branch7x7_2", padding=(0, 3))
        b7 = c(b7, f"{n}.branch7x7_3", padding=(3, 0))
        bd = c(x, f"{n}.branch7x7dbl_1")
        bd = c(bd, f"{n}.branch7x7dbl_2", padding=(3, 0))
        bd = c(bd, f"{n}.branch7x7dbl_3", padding=(0, 3))
        bd = c(bd, f"{n}.branch7x7dbl_4", padding=(3, 0))
        bd = c(bd, f"{n}.branch7x7dbl_5", padding=(0, 3))
        bp = c(self.avg_pool(x), f"{n}.branch_pool")
        return self.torch.cat([b1, b7, bd, bp], 1)

    def block_d(self, x, n):
        c = self.conv
        b3 = c(c(x, f"{n}.branch3x3_1"), f"{n}.branch3x3_2", stride=2)
        b7 = c(x, f"{n}.branch7x7x3_1")
        b7 = c(b7, f"{n}.branch7x7x3_2", padding=(0, 3))
        b7 = c(b7, f"{n}.branch7x7x3_3", padding=(3, 0))
        b7 = c(b7, f"{n}.branch7x7x3_4", stride=2)
        return self.torch.cat([b3, b7, self.F.max_pool2d(x, 3, stride=2)], 1)

    def block_e(self, x, n, pool):
        c, cat = self.conv, self.torch.cat
        b1 = c(x, f"{n}.branch1x1")
        b3 = c(x, f"{n}.branch3x3_1")
        b3 = cat(
            [
                c(b3, f"{n}.branch3x3_2a", padding=(0, 1)),
                c(b3, f"{n}.branch3x3_2b", padding=(1, 0)),
            ],
            1,
        )
        bd = c(c(x, f"{n}.branch3x3dbl_1"), f"{n}.branch3x3dbl_2", padding=1)
        bd = cat(
            [
                c(bd, f"{n}.branch3x3dbl_3a", padding=(0, 1)),
                c(bd, f"{n}.branch3x3dbl_3b", padding=(1, 0)),
            ],
            1,
        )
        pooled = self.avg_pool(x) if pool == "avg" else self.F.max_pool2d(x, 3, stride=1, padding=1)
        return cat([b1, b3, bd, c(pooled, f"{n}.branch_pool")], 1)

    def block(self, x, name):
        kind = {"5": "a", "6a": "b", "6": "c", "7a": "d", "7b": "e1", "7c": "e2"}
        key = name[6:] if name[6:] in kind else name[6]
        if kind[key] == "e1":
            return self.block_e(x, name, "avg")
        if kind[key] == "e2":
            return self.block_e(x, name, "max")
        return getattr(self, f"block_{kind[key]}")(x, name)

    def __call__(self, images_nhwc: np.ndarray):
        """images [B, H, W, 3] in [-1, 1] -> (pool3 [B, 2048], logits [B, 1008]), as pytorch-fid
        (resize_input=True; inputs already in [-1, 1], so no normalisation)."""
        F, c = self.F, self.conv
        x = self.torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = c(x, "Conv2d_1a_3x3", stride=2)
        x = c(x, "Conv2d_2a_3x3")
        x = c(x, "Conv2d_2b_3x3", padding=1)
        x = F.max_pool2d(x, 3, stride=2)
        x = c(x, "Conv2d_3b_1x1")
        x = c(x, "Conv2d_4a_3x3")
        x = F.max_pool2d(x, 3, stride=2)
        for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = self.block(x, f"Mixed_{n}")
        pool3 = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pool3.numpy(), F.linear(pool3, self.sd["fc.weight"], self.sd["fc.bias"]).numpy()


def _close(ours, ref, tol=1e-4):
    """Equal up to float32 rounding through many layers: |ours - ref| <= tol · max|ref|."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    scale = float(np.abs(ref).max())
    assert scale > 0
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tol * scale)


def _sub(variables, name):
    return {c: variables[c][name] for c in ("params", "batch_stats")}


BLOCKS = [  # (name, Flax block, input channels, input size): small grids keep borders in play
    ("Mixed_5b", inception.InceptionA(32), 192, 9),
    ("Mixed_6a", inception.InceptionB(), 288, 9),
    ("Mixed_6b", inception.InceptionC(128), 768, 9),
    ("Mixed_7a", inception.InceptionD(), 768, 9),
    ("Mixed_7b", inception.InceptionE("avg"), 1280, 5),
    ("Mixed_7c", inception.InceptionE("max"), 2048, 5),
]


def test_conv_bn_relu_matches_torch(state, variables):
    ref = _TorchFID(state)
    x = _images(2, 35)
    module = inception.BasicConv2d(32, 3, strides=2)
    ours = module.apply(_sub(variables, "Conv2d_1a_3x3"), x)
    expected = ref.conv(ref.torch.from_numpy(x).permute(0, 3, 1, 2), "Conv2d_1a_3x3", stride=2)
    _close(ours, expected.permute(0, 2, 3, 1).numpy(), 1e-5)


@pytest.mark.parametrize("name, module, channels, size", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_inception_block_matches_torch(state, variables, name, module, channels, size):
    ref = _TorchFID(state)
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 2, (2, size, size, channels)).astype(np.float32)  # post-ReLU-like
    ours = module.apply(_sub(variables, name), x)
    expected = ref.block(ref.torch.from_numpy(x).permute(0, 3, 1, 2), name)
    _close(ours, expected.permute(0, 2, 3, 1).numpy(), 1e-5)


def test_resize_matches_torch_bilinear():
    torch = _torch()
    for size in (37, 400):  # up- and downsampling
        x = _images(2, size, seed=size)
        ours = np.asarray(inception.prepare_images(x))
        t = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2),
            size=(299, 299),
            mode="bilinear",
            align_corners=False,
        )
        np.testing.assert_allclose(ours, t.permute(0, 2, 3, 1).numpy(), atol=2e-6)


def test_whole_network_matches_torch(state, variables):
    images = _images(3, 32)
    ours_feats, ours_logits = inception.features_and_logits(variables, images, batch_size=2)
    ref_feats, ref_logits = _TorchFID(state)(images)
    _close(ours_feats, ref_feats)
    _close(ours_logits, ref_logits)
