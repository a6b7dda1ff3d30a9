"""The autoencoder families (VQ-VAE, VQGAN, the KL autoencoder): `family.AutoencoderFamily`."""
