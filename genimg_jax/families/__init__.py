"""The built-in model families, registered by name (see `genimg_jax.family`)."""

from genimg_jax.families.gan import GANFamily
from genimg_jax.families.stylegan2 import StyleGAN2Family
from genimg_jax.families.vae import VAEFamily
from genimg_jax.family import register
from genimg_jax.models import conv_vae, dcgan, mlp_vae, resnet_gan

register("dcgan", GANFamily(dcgan.build))
register("resnet_gan", GANFamily(resnet_gan.build))
register("stylegan2", StyleGAN2Family())
register("conv_vae", VAEFamily(conv_vae.build))
register("mlp_vae", VAEFamily(mlp_vae.build))

__all__ = ["GANFamily", "StyleGAN2Family", "VAEFamily"]
