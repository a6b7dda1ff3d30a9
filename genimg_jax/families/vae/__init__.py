"""The VAE family (`family.VAEFamily`: β-VAE and its relatives, `step`; FactorVAE's variant,
`factor_vae`) and its networks: a conv encoder-decoder (`conv`) and an MLP one (`mlp`)."""
