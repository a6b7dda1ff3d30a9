"""The autoencoders' networks: taming-transformers' convolutional encoder and decoder (ResNet
blocks with group norm and swish, one stride-2 stage per factor 2 of `model.downsample`) and
pix2pix's PatchGAN discriminator, which scores overlapping patches instead of whole images.

Differences from the reference code, each a choice: no attention blocks (the reference puts one
in the middle and at 16 px resolutions; at 28-128 px images ResNet blocks suffice), and group
norm instead of batch norm in the PatchGAN, so that D has no batch statistics and its step under
pmap equals the step under jit (`core.collectives`)."""

import math

import flax.linen as nn
import jax

Array = jax.Array
# width multipliers of the encoder's stages, from the image's resolution down (taming's
# ch_mult = (1, 1, 2, 2, 4) for f = 16; (1, 2, 2, 4) is latent diffusion's f = 8)
STAGE_WIDTHS = (1, 2, 2, 4)
DOWNSAMPLE_FACTORS = (2, 4, 8)


def stage_widths(width: int, downsample: int) -> list[int]:
    """Channels of the stages: one more than the stride-2 steps log2(downsample)."""
    return [width * m for m in STAGE_WIDTHS[: int(math.log2(downsample)) + 1]]


def group_norm(channels: int) -> nn.GroupNorm:
    """taming's Normalize: GroupNorm of 32 groups, eps 1e-6 (fewer groups for narrow layers)."""
    return nn.GroupNorm(num_groups=math.gcd(32, channels), epsilon=1e-6)


class ResBlock(nn.Module):
    """norm, swish, conv 3×3, norm, swish, conv 3×3, plus the input (1×1 conv if widths differ)."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = nn.Conv(self.features, (3, 3))(nn.swish(group_norm(x.shape[-1])(x)))
        h = nn.Conv(self.features, (3, 3))(nn.swish(group_norm(self.features)(h)))
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), name="shortcut")(x)
        return x + h


class Encoder(nn.Module):
    """Images [B, H, W, C] -> latents [B, H/f, W/f, out_channels]."""

    widths: tuple[int, ...]
    res_blocks: int
    out_channels: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = nn.Conv(self.widths[0], (3, 3), name="conv_in")(x)
        for level, width in enumerate(self.widths):
            for _ in range(self.res_blocks):
                h = ResBlock(width)(h)
            if level < len(self.widths) - 1:  # taming's Downsample: pad (0, 1), conv 3×3 stride 2
                h = nn.Conv(width, (3, 3), strides=2, padding=((0, 1), (0, 1)))(h)
        h = ResBlock(self.widths[-1])(ResBlock(self.widths[-1])(h))
        h = nn.swish(group_norm(self.widths[-1])(h))
        return nn.Conv(self.out_channels, (3, 3), name="conv_out")(h)


class DecoderBody(nn.Module):
    """Latents [B, h, w, c] -> features [B, h·f, w·f, widths[0]]: a stage upsamples by nearest
    neighbours, then convolves (taming's Upsample)."""

    widths: tuple[int, ...]
    res_blocks: int

    @nn.compact
    def __call__(self, z: Array) -> Array:
        h = nn.Conv(self.widths[-1], (3, 3), name="conv_in")(z)
        h = ResBlock(self.widths[-1])(ResBlock(self.widths[-1])(h))
        for level in reversed(range(len(self.widths))):
            for _ in range(self.res_blocks + 1):
                h = ResBlock(self.widths[level])(h)
            if level > 0:
                b, height, width, c = h.shape
                h = jax.image.resize(h, (b, 2 * height, 2 * width, c), "nearest")
                h = nn.Conv(self.widths[level], (3, 3))(h)
        return nn.swish(group_norm(self.widths[0])(h))


class Decoder(nn.Module):
    """Latents -> the features before the last layer (`features`) and pixels from them
    (`to_pixels`: the last layer, on which the adaptive weight is taken)."""

    widths: tuple[int, ...]
    res_blocks: int
    out_channels: int

    def setup(self):
        self.body = DecoderBody(self.widths, self.res_blocks)
        self.conv_out = nn.Conv(self.out_channels, (3, 3))

    def features(self, z: Array) -> Array:
        return self.body(z)

    def to_pixels(self, h: Array) -> Array:
        return self.conv_out(h)

    def __call__(self, z: Array) -> Array:
        return self.to_pixels(self.features(z))


class Autoencoder(nn.Module):
    """The encoder and decoder; for a vector-quantised one also the codebook [K, D] (a
    parameter: learned by the codebook loss, or written by the step from its EMAs), and for a
    KL one the scalar log-variance of its reconstruction likelihood (latent diffusion's
    `logvar`). The encoder gives `latent_channels` channels, twice that for the KL's mean and
    log-variance."""

    widths: tuple[int, ...]
    res_blocks: int
    latent_channels: int
    image_channels: int
    bottleneck: str  # "vq" | "kl"
    codebook_size: int = 0

    def setup(self):
        doubled = 2 if self.bottleneck == "kl" else 1
        self.encoder = Encoder(self.widths, self.res_blocks, doubled * self.latent_channels)
        self.decoder = Decoder(self.widths, self.res_blocks, self.image_channels)
        if self.bottleneck == "vq":
            k, d = self.codebook_size, self.latent_channels
            init = nn.initializers.uniform(scale=2.0 / k)  # taming: U(-1/K, 1/K), shifted below
            self.codebook = self.param("codebook", lambda r, s: init(r, s) - 1.0 / k, (k, d))
        else:
            self.logvar = self.param("logvar", nn.initializers.zeros, ())

    def encode(self, x: Array) -> Array:
        return self.encoder(x)

    def decoder_features(self, z: Array) -> Array:
        return self.decoder.features(z)

    def to_pixels(self, h: Array) -> Array:
        return self.decoder.to_pixels(h)

    def decode(self, z: Array) -> Array:
        return self.decoder(z)

    def __call__(self, x: Array) -> Array:
        """Initialises every parameter: the decoder on the encoder's latents (for the KL's
        mean and log-variance, on their first half)."""
        z = self.encode(x)[..., : self.latent_channels]
        _ = self.codebook if self.bottleneck == "vq" else self.logvar
        return self.decode(z)


class PatchGAN(nn.Module):
    """pix2pix's NLayerDiscriminator: conv 4×4 stride 2 and leaky ReLU (0.2), `layers` − 1 more
    such with group norm and widths doubling up to 8×, one at stride 1, then a 1-channel conv:
    logits [B, h, w] of overlapping patches."""

    width: int
    layers: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        conv = lambda f, s: nn.Conv(f, (4, 4), strides=s, padding=((1, 1), (1, 1)))
        h = nn.leaky_relu(conv(self.width, 2)(x), 0.2)
        for n in range(1, self.layers + 1):
            features = self.width * min(2**n, 8)
            h = conv(features, 2 if n < self.layers else 1)(h)
            h = nn.leaky_relu(group_norm(features)(h), 0.2)
        return conv(1, 1)(h)[..., 0]
