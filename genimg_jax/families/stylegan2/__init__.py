"""StyleGAN2: the GAN family's step with StyleGAN2's networks (`networks`) and recipe
(`family.StyleGAN2Family`)."""
