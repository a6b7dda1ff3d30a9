"""The built-in model families, registered by name (see `genimg_jax.family`)."""

from genimg_jax.core.family import register
from genimg_jax.families.gan import dcgan
from genimg_jax.families.gan import resnet as resnet_gan
from genimg_jax.families.gan.family import GANFamily
from genimg_jax.families.stylegan2.family import StyleGAN2Family
from genimg_jax.families.vae import conv as conv_vae
from genimg_jax.families.vae import mlp as mlp_vae
from genimg_jax.families.vae.family import VAEFamily

register("dcgan", GANFamily(dcgan.build))
register("resnet_gan", GANFamily(resnet_gan.build))
register("stylegan2", StyleGAN2Family())
register("conv_vae", VAEFamily(conv_vae.build))
register("mlp_vae", VAEFamily(mlp_vae.build))

__all__ = ["GANFamily", "StyleGAN2Family", "VAEFamily"]
