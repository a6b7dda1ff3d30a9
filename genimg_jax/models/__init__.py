"""Flax modules of the built-in families (registered in `genimg_jax.families`)."""
