"""PyTorch twins of genimg_jax's DCGAN, ResNet GAN and conv VAE, and their training steps
(benchmark only).

The modules reproduce `genimg_jax/models/{dcgan,resnet_gan,conv_vae,common}.py` layer for layer,
with the same parameter counts (checked against the Flax models by `check_param_counts`):

- DownStack: 4x4 stride-2 "SAME" convs with bias (PyTorch `padding=1` is XLA's SAME here);
- UpStack: 4x4 stride-2 transposed convs, out = 2·in (PyTorch `padding=1`), BatchNorm (no conv
  bias) + ReLU in G, bias + ReLU in the VAE decoder; the last one to the image channels, with bias;
- G: Linear(Z, s·s·w0, no bias) -> [w0, s, s] -> BatchNorm (momentum 0.9 in Flax = 0.1 here)
  -> ReLU -> UpStack -> tanh; D: DownStack with LeakyReLU(0.2) -> Linear(1);
- VAE: DownStack(ReLU) -> Linear(hidden) ReLU -> Linear(2Z) | Linear(hidden) ReLU ->
  Linear(s·s·w0) ReLU -> [w0, s, s] -> UpStack (no BatchNorm) -> pixel logits;
- ResNet GAN (SN-GAN's CIFAR ResNet, unconditional): G's up-blocks BatchNorm, ReLU, nearest 2x,
  3x3 conv, BatchNorm, ReLU, 3x3 conv, + 1x1 conv of the input then 2x; D's blocks with 3x3
  convs, 2x2 average pooling and 1x1 shortcuts, every conv and the last Linear under
  `torch.nn.utils.parametrizations.spectral_norm` (one power iteration per training-mode call).

The steps do the same work as `genimg_jax.families` (gan/step.py, vae/step.py): a GAN step is one D update on real and
(detached) fake images, two D passes as in ours, then one G update on fresh latents through D
with D's parameters frozen (`requires_grad=False`, so no D weight gradients are computed), then
G's EMA, with the config's loss (non-saturating or hinge); a VAE step is one Adam update of the
Bernoulli negative ELBO. Activations are NCHW (PyTorch's default layout); ours are NHWC.
Install: `.venv/bin/pip install torch==2.13.0`.

Run `.venv/bin/python benchmarks/torch_reference.py` to check parameter counts against ours.
"""

import os
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # image size -> (start size, doublings), as ours


def _batch_norm(features: int) -> nn.BatchNorm2d:
    """Flax's BatchNorm(momentum=0.9): PyTorch's momentum is the other side, 0.1."""
    return nn.BatchNorm2d(features, momentum=0.1, eps=1e-5)


def _widths(base: int, doublings: int) -> list[int]:
    return [base * 2**i for i in range(doublings)]


def _down_stack(channels: int, widths: list[int], activation: Callable[[], nn.Module]) -> list:
    layers, cin = [], channels
    for width in widths:
        layers += [nn.Conv2d(cin, width, 4, 2, 1), activation()]
        cin = width
    return layers


def _up_stack(cin: int, widths: list[int], out_channels: int, batch_norm: bool) -> list:
    layers = []
    for width in widths:
        layers.append(nn.ConvTranspose2d(cin, width, 4, 2, 1, bias=not batch_norm))
        if batch_norm:
            layers.append(_batch_norm(width))
        layers.append(nn.ReLU())
        cin = width
    layers.append(nn.ConvTranspose2d(cin, out_channels, 4, 2, 1))
    return layers


class Generator(nn.Module):
    """z: [B, Z] -> image [B, C, S, S] in [-1, 1]."""

    def __init__(self, image_size: int, channels: int, width: int, latent_dim: int):
        super().__init__()
        start, doublings = SIZES[image_size]
        stack = _widths(width, doublings)[::-1]  # coarse to fine
        self.shape = (stack[0], start, start)
        self.project = nn.Linear(latent_dim, start * start * stack[0], bias=False)
        self.body = nn.Sequential(
            _batch_norm(stack[0]),
            nn.ReLU(),
            *_up_stack(stack[0], stack[1:], channels, batch_norm=True),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(z.shape[0], *self.shape))


class Discriminator(nn.Module):
    """image [B, C, S, S] -> logits [B]."""

    def __init__(self, image_size: int, channels: int, width: int):
        super().__init__()
        start, doublings = SIZES[image_size]
        stack = _widths(width, doublings)
        self.body = nn.Sequential(
            *_down_stack(channels, stack, lambda: nn.LeakyReLU(0.2)),
            nn.Flatten(),
            nn.Linear(start * start * stack[-1], 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[:, 0]


class ResGBlock(nn.Module):
    """SN-GAN's up-ResBlock: [B, C, H, W] -> [B, width, 2H, 2W]."""

    def __init__(self, cin: int, width: int):
        super().__init__()
        self.norm0 = _batch_norm(cin)
        self.conv0 = nn.Conv2d(cin, width, 3, 1, 1)
        self.norm1 = _batch_norm(width)
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = lambda a: F.interpolate(a, scale_factor=2, mode="nearest")
        h = self.conv0(up(F.relu(self.norm0(x))))
        h = self.conv1(F.relu(self.norm1(h)))
        return h + up(self.shortcut(x))


class ResGenerator(nn.Module):
    """z: [B, Z] -> image [B, C, S, S] in [-1, 1] (unconditional)."""

    def __init__(self, image_size: int, channels: int, width: int, latent_dim: int):
        super().__init__()
        start, doublings = SIZES[image_size]
        self.shape = (width, start, start)
        self.project = nn.Linear(latent_dim, start * start * width)
        self.blocks = nn.Sequential(*[ResGBlock(width, width) for _ in range(doublings)])
        self.norm = _batch_norm(width)
        self.out = nn.Conv2d(width, channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.project(z).view(z.shape[0], *self.shape))
        return torch.tanh(self.out(F.relu(self.norm(h))))


def _sn(module: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module)


class ResDBlock(nn.Module):
    """SN-GAN's D ResBlock (`optimized`: the first one, on images)."""

    def __init__(self, cin: int, width: int, down: bool, optimized: bool = False):
        super().__init__()
        self.down, self.optimized = down, optimized
        self.conv0, self.conv1 = (
            _sn(nn.Conv2d(cin, width, 3, 1, 1)),
            _sn(nn.Conv2d(width, width, 3, 1, 1)),
        )
        self.shortcut = _sn(nn.Conv2d(cin, width, 1)) if optimized or down or cin != width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = lambda a: F.avg_pool2d(a, 2)
        h = self.conv0(x if self.optimized else F.relu(x))
        h = self.conv1(F.relu(h))
        h = pool(h) if self.down else h
        if self.optimized:
            return h + self.shortcut(pool(x))
        if self.shortcut is None:
            return h + x
        shortcut = self.shortcut(x)
        return h + (pool(shortcut) if self.down else shortcut)


class ResDiscriminator(nn.Module):
    """image [B, C, S, S] -> logits [B] (unconditional)."""

    def __init__(self, image_size: int, channels: int, width: int, plain_blocks: int = 2):
        super().__init__()
        _, doublings = SIZES[image_size]
        blocks = [ResDBlock(channels, width, down=True, optimized=True)]
        blocks += [ResDBlock(width, width, down=True) for _ in range(doublings - 2)]
        blocks += [ResDBlock(width, width, down=False) for _ in range(plain_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.out = _sn(nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.blocks(x)).sum(dim=(2, 3)))[:, 0]


class VAE(nn.Module):
    """x [B, C, S, S], eps [B, Z] -> (logits [B, C, S, S], mean [B, Z], logvar [B, Z])."""

    def __init__(self, image_size: int, channels: int, width: int, latent_dim: int, hidden: int):
        super().__init__()
        start, doublings = SIZES[image_size]
        stack = _widths(width, doublings)
        self.encoder = nn.Sequential(
            *_down_stack(channels, stack, nn.ReLU),
            nn.Flatten(),
            nn.Linear(start * start * stack[-1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        stack = stack[::-1]
        self.shape = (stack[0], start, start)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, start * start * stack[0]),
            nn.ReLU(),
        )
        self.up = nn.Sequential(*_up_stack(stack[0], stack[1:], channels, batch_norm=False))

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mean + torch.exp(0.5 * logvar) * eps
        logits = self.up(self.project(z).view(z.shape[0], *self.shape))
        return logits, mean, logvar


def param_count(module: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())


def _adam(params, lr: float, b1: float, b2: float = 0.999) -> torch.optim.Adam:
    # foreach: the multi-tensor Adam (PyTorch's default on CUDA; faster than the loop on CPU too)
    return torch.optim.Adam(params, lr=lr, betas=(b1, b2), foreach=True)


GAN_LOSSES = {  # name -> (L_D(real logits, fake logits), L_G(fake logits)), as genimg's losses
    "non_saturating": (
        lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
        lambda f: F.softplus(-f).mean(),
    ),
    "hinge": (lambda r, f: F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean(), lambda f: -f.mean()),
}


class GANStep:
    """One D update (real + detached fake) then one G update against a frozen D, then G's EMA,
    as `genimg_jax.families.gan.step.train_step` with d_steps=1. `compile=True` wraps G, D and both
    optimizer steps in `torch.compile`."""

    def __init__(
        self,
        g: nn.Module,
        d: nn.Module,
        latent_dim: int,
        g_lr: float = 2e-4,
        d_lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        ema_decay: float = 0.999,
        loss: str = "non_saturating",
        compile: bool = False,
        device: str = "cpu",
        bf16: bool = False,
    ):
        self.g, self.d, self.latent_dim, self.ema_decay = g, d, latent_dim, ema_decay
        self.device, self.bf16 = device, bf16
        self.d_loss, self.g_loss = GAN_LOSSES[loss]
        g.train(), d.train()
        self.opt_g, self.opt_d = (
            _adam(g.parameters(), g_lr, *betas),
            _adam(d.parameters(), d_lr, *betas),
        )
        self.g_params, self.d_params = list(g.parameters()), list(d.parameters())
        self.ema = [p.detach().clone() for p in self.g_params]
        self.g_fn, self.d_fn = g, d
        self.opt_g_step, self.opt_d_step = self.opt_g.step, self.opt_d.step
        if compile:
            self.g_fn, self.d_fn = torch.compile(g), torch.compile(d)
            self.opt_g_step = torch.compile(self.opt_g.step)
            self.opt_d_step = torch.compile(self.opt_d.step)

    def __call__(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device, torch.bfloat16, enabled=self.bf16):
            return self._step(real)

    def _step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = real.shape[0]
        # D update: G's samples without a graph; two D passes, as ours.
        with torch.no_grad():
            fake = self.g_fn(torch.randn(batch, self.latent_dim, device=self.device))
        self.opt_d.zero_grad(set_to_none=True)
        real_logits, fake_logits = self.d_fn(real), self.d_fn(fake)
        d_loss = self.d_loss(real_logits, fake_logits)
        d_loss.backward()
        self.opt_d_step()
        # G update through a frozen D: gradients flow to D's input only.
        for p in self.d_params:
            p.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        z = torch.randn(batch, self.latent_dim, device=self.device)
        g_loss = self.g_loss(self.d_fn(self.g_fn(z)))
        g_loss.backward()
        self.opt_g_step()
        for p in self.d_params:
            p.requires_grad_(True)
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, self.g_params, 1.0 - self.ema_decay)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class VAEStep:
    """One Adam update of L = E[-log p(x|z)] + β·E[KL(q(z|x) || N(0, I))] (Bernoulli pixels),
    as `genimg_jax.families.vae.step.vae_step`. `compile=True` wraps the model and the optimizer step."""

    def __init__(
        self,
        vae: VAE,
        latent_dim: int,
        lr: float = 1e-3,
        beta: float = 1.0,
        compile: bool = False,
        device: str = "cpu",
        bf16: bool = False,
    ):
        self.vae, self.latent_dim, self.beta = vae, latent_dim, beta
        self.device, self.bf16 = device, bf16
        self.opt = _adam(vae.parameters(), lr, 0.9)
        self.vae_fn, self.opt_step = vae, self.opt.step
        if compile:
            self.vae_fn, self.opt_step = torch.compile(vae), torch.compile(self.opt.step)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device, torch.bfloat16, enabled=self.bf16):
            return self._step(x)

    def _step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        eps = torch.randn(x.shape[0], self.latent_dim, device=self.device)
        self.opt.zero_grad(set_to_none=True)
        logits, mean, logvar = self.vae_fn(x, eps)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * torch.sum(torch.exp(logvar) + mean.square() - 1.0 - logvar, dim=-1)
        loss = recon.mean() + self.beta * kl.mean()
        loss.backward()
        self.opt_step()
        return {"loss": loss.detach()}


GAN_FAMILIES = {"dcgan": (Generator, Discriminator), "resnet_gan": (ResGenerator, ResDiscriminator)}


def build_step(
    config, compile: bool = False, device: str = "cpu"
) -> tuple[Callable, dict[str, int]]:
    """The PyTorch step for a genimg_jax config (family, sizes, widths, learning rates) on
    `device` ("cpu" or "cuda"), with bfloat16 autocast where `train.compute_dtype` is bfloat16
    (float32 weights, as ours), and the parameter count of each network, keyed like
    `ours_param_counts`."""
    bf16 = config.train.compute_dtype == "bfloat16"
    torch.manual_seed(config.seed)
    data, m, t = config.data, config.model, config.train
    if m.family in GAN_FAMILIES:
        if t.d_steps != 1 or m.get("num_classes", 0):
            raise ValueError("the PyTorch GAN twins do one D update per step, unconditionally")
        g_class, d_class = GAN_FAMILIES[m.family]
        g = g_class(data.image_size, data.channels, m.g_width, m.latent_dim).to(device)
        d = d_class(data.image_size, data.channels, m.d_width).to(device)
        step = GANStep(
            g,
            d,
            m.latent_dim,
            t.g_lr,
            t.d_lr,
            (t.b1, t.b2),
            t.ema_decay,
            t.loss,
            compile,
            device,
            bf16,
        )
        return step, {"g": param_count(g), "d": param_count(d)}
    vae = VAE(data.image_size, data.channels, m.width, m.latent_dim, m.hidden).to(device)
    step = VAEStep(vae, m.latent_dim, t.lr, m.beta, compile, device, bf16)
    return step, {"vae": param_count(vae)}


def ours_param_counts(config) -> dict[str, int]:
    """Parameter counts of genimg_jax's networks for `config`, keyed "g"/"d" or "vae"."""
    import jax

    from genimg_jax import families

    state = jax.eval_shape(lambda: families.create_state(config, jax.random.PRNGKey(0)))

    def count(tree) -> int:
        return sum(leaf.size for leaf in jax.tree.leaves(tree))

    if hasattr(state, "g"):
        return {"g": count(state.g.params), "d": count(state.d.params)}
    return {"vae": count(state.params)}


def check_param_counts(config, torch_counts: dict[str, int]) -> dict[str, int]:
    """Raises AssertionError unless the PyTorch networks have exactly our parameter counts."""
    ours = ours_param_counts(config)
    assert ours == torch_counts, f"parameter counts differ: ours {ours}, PyTorch {torch_counts}"
    return ours


def _copy_dense(linear: nn.Linear, p, in_chw=None, out_chw=None) -> None:
    """Flax Dense [in, out] -> Linear [out, in]; an NHWC-flattened side becomes NCHW."""
    k = np.asarray(p["kernel"])
    if in_chw:
        c, h, w = in_chw
        k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
    if out_chw:
        c, h, w = out_chw
        k = k.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(k.shape[0], -1)
    _weight(linear).copy_(torch.from_numpy(k.T.copy()))
    if linear.bias is not None:
        b = np.array(p["bias"])
        if out_chw:
            b = b.reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
        linear.bias.copy_(torch.from_numpy(b.copy()))


def _weight(module: nn.Module) -> torch.Tensor:
    """The weight parameter itself (under a spectral-norm parametrization: the original)."""
    if hasattr(module, "parametrizations"):
        return module.parametrizations.weight.original
    return module.weight


def _copy_power_iteration(module: nn.Module, kernel, u) -> None:
    """Sets a spectral-norm parametrization's (u, v) so that its eval-mode sigma equals Flax's
    SpectralNorm read without update: one power iteration from the stored u [1, out] over the
    kernel as a [-1, out] matrix (v = unit(u W^T), u' = unit(v W), sigma = u'·W v)."""
    kernel = np.asarray(kernel, np.float64)
    value = kernel.reshape(-1, kernel.shape[-1])
    unit = lambda a: a / max(np.linalg.norm(a), 1e-12)
    v = unit(np.asarray(u, np.float64)[0] @ value.T)
    u_new = unit(v @ value)
    if kernel.ndim == 4:  # Flax's rows are (kh, kw, in); PyTorch flattens a conv as (in, kh, kw)
        v = v.reshape(kernel.shape[:3]).transpose(2, 0, 1).reshape(-1)
    sn = module.parametrizations.weight[0]
    sn._u.copy_(torch.from_numpy(u_new.astype("f4")))
    sn._v.copy_(torch.from_numpy(v.astype("f4")))


def _copy_conv(conv: nn.Module, p) -> None:
    """Conv [kh, kw, in, out] -> Conv2d [out, in, kh, kw]; ours ConvTranspose [kh, kw, out, in]
    -> ConvTranspose2d [in, out, kh, kw]: the same permutation."""
    _weight(conv).copy_(torch.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy()))
    if conv.bias is not None:
        conv.bias.copy_(torch.from_numpy(np.array(p["bias"])))


def _copy_stack(modules: list[nn.Module], params, conv_prefix: str) -> None:
    """Copies Flax `{conv_prefix}_i` and `BatchNorm_i` of `params` into the convs and the
    BatchNorms among `modules`, in order."""
    convs = [m for m in modules if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    norms = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    for i, conv in enumerate(convs):
        _copy_conv(conv, params[f"{conv_prefix}_{i}"])
    for i, norm in enumerate(norms):
        norm.weight.copy_(torch.from_numpy(np.array(params[f"BatchNorm_{i}"]["scale"])))
        norm.bias.copy_(torch.from_numpy(np.array(params[f"BatchNorm_{i}"]["bias"])))


def _copy_dcgan(g: Generator, d: Discriminator, state, config) -> None:
    """Our DCGAN's parameters into the twins."""
    gp, dp = state.g.params, state.d.params
    start, doublings = SIZES[config.data.image_size]
    _copy_dense(g.project, gp["Dense_0"], out_chw=g.shape)
    _copy_stack([g.body[0]], gp, "Conv")  # G's first BatchNorm
    _copy_stack(list(g.body)[2:], gp["UpStack_0"], "ConvTranspose")
    _copy_stack(list(d.body), dp["DownStack_0"], "Conv")
    last = _widths(config.model.d_width, doublings)[-1]
    _copy_dense(d.body[-1], dp["Dense_0"], in_chw=(last, start, start))


def _copy_resnet_gan(g: ResGenerator, d: ResDiscriminator, state, config) -> None:
    """Our ResNet GAN's parameters into the twins, and D's spectral-norm vectors."""
    del config
    gp, dp, stats = state.g.params, state.d.params, state.d.batch_stats
    _copy_dense(g.project, gp["Dense_0"], out_chw=g.shape)
    for i, block in enumerate(g.blocks):
        bp = gp[f"GBlock_{i}"]
        _copy_stack([block.conv0, block.conv1, block.shortcut], bp, "Conv")
        for j, norm in enumerate((block.norm0, block.norm1)):
            _copy_stack([norm], bp[f"ConditionalBatchNorm_{j}"], "Conv")
    _copy_stack([g.norm, g.out], gp, "Conv")
    for i, block in enumerate(d.blocks):  # DBlock_i: Conv_j under SpectralNorm_j
        bp, bs = dp[f"DBlock_{i}"], stats[f"DBlock_{i}"]
        convs = [c for c in (block.conv0, block.conv1, block.shortcut) if c is not None]
        for j, conv in enumerate(convs):
            _copy_conv(conv, bp[f"Conv_{j}"])
            u = bs[f"SpectralNorm_{j}"][f"Conv_{j}/kernel/u"]
            _copy_power_iteration(conv, bp[f"Conv_{j}"]["kernel"], u)
    _copy_dense(d.out, dp["Dense_0"])
    _copy_power_iteration(
        d.out, dp["Dense_0"]["kernel"], stats["SpectralNorm_0"]["Dense_0/kernel/u"]
    )


COPY_GAN_WEIGHTS = {"dcgan": _copy_dcgan, "resnet_gan": _copy_resnet_gan}


@torch.no_grad()
def check_outputs(config, tol: float = 1e-4) -> float:
    """Loads our initial parameters into the PyTorch twins and compares their outputs (training
    mode) on random inputs; raises AssertionError beyond `tol` (max abs error / max abs value).
    Returns the largest relative error."""
    import jax

    from genimg_jax import families

    state = families.create_state(config, jax.random.PRNGKey(0))
    data, m = config.data, config.model
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, data.image_size, data.image_size, data.channels)).astype("f4")
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    pairs = []  # (ours NHWC/NC, theirs NCHW/NC)
    if m.family in GAN_FAMILIES:
        g_class, d_class = GAN_FAMILIES[m.family]
        g = g_class(data.image_size, data.channels, m.g_width, m.latent_dim)
        d = d_class(data.image_size, data.channels, m.d_width)
        COPY_GAN_WEIGHTS[m.family](g, d, state, config)
        z = rng.standard_normal((8, m.latent_dim)).astype("f4")
        fake, _ = state.g.apply_fn(state.g.variables(), z, train=True, mutable=["batch_stats"])
        pairs.append((np.asarray(fake).transpose(0, 3, 1, 2), g.train()(torch.from_numpy(z))))
        # eval: spectral norm uses the (u, v) set by the copy, without a power iteration
        pairs.append((np.asarray(state.d.apply_fn(state.d.variables(), x)), d.eval()(x_t)))
    else:
        vae = VAE(data.image_size, data.channels, m.width, m.latent_dim, m.hidden)
        enc, dec = state.params["encoder"], state.params["decoder"]
        start, doublings = SIZES[data.image_size]
        stack = _widths(m.width, doublings)
        _copy_stack(list(vae.encoder), enc["DownStack_0"], "Conv")
        _copy_dense(vae.encoder[-3], enc["Dense_0"], in_chw=(stack[-1], start, start))
        _copy_dense(vae.encoder[-1], enc["Dense_1"])
        _copy_dense(vae.project[0], dec["Dense_0"])
        _copy_dense(vae.project[2], dec["Dense_1"], out_chw=vae.shape)
        _copy_stack(list(vae.up), dec["UpStack_0"], "ConvTranspose")
        eps = rng.standard_normal((8, m.latent_dim)).astype("f4")
        logits, mean, logvar = state.apply_fn({"params": state.params}, x, eps)
        theirs = vae(x_t, torch.from_numpy(eps))
        pairs.append((np.asarray(logits).transpose(0, 3, 1, 2), theirs[0]))
        pairs += [(np.asarray(mean), theirs[1]), (np.asarray(logvar), theirs[2])]
    worst = 0.0
    for ours, theirs in pairs:
        theirs = theirs.numpy()
        assert ours.shape == theirs.shape, f"output shapes differ: {ours.shape} {theirs.shape}"
        worst = max(worst, float(np.max(np.abs(ours - theirs)) / np.max(np.abs(ours))))
    assert worst < tol, f"outputs differ from ours: relative error {worst:.2e}"
    return worst


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py's get_config(arg)."""
    from genimg_jax import config as config_lib

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return config_lib.from_file(os.path.join(repo, "configs", f"{name}.py"), arg)


def main() -> None:
    """Checks parameter counts of every benchmarked architecture against ours."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name, sizes in (
        ("dcgan_mnist", (28, 32, 64)),
        ("vae_mnist", (28, 32, 64)),
        ("sngan_cifar10", (32,)),
    ):
        for size in sizes:
            config = load_config(name)
            config.data.image_size = size
            config.train.d_steps = 1  # the twins' step (SN-GAN's config has 5)
            _, counts = build_step(config)
            check_param_counts(config, counts)
            error = check_outputs(config)
            print(
                f"{name} {size}x{size}: parameter counts equal {counts}; outputs with our "
                f"weights agree (max relative error {error:.1e})"
            )


if __name__ == "__main__":
    main()
