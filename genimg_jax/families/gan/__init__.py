"""The GAN family (`family.GANFamily`) and its networks: the DCGAN (`dcgan`) and the ResNet GAN
of SNGAN/BigGAN (`resnet`)."""
