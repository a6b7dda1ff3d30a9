"""β-VAE (Higgins et al. 2017) on the procedural shapes data set (dSprites-like, 64x64, with
known generative factors), for disentanglement work.

    genimg train --config configs/beta_vae_shapes.py --workdir runs/bvae --config.model.beta=8
"""

from genimg_jax.config import base_config, shrink_for_tests


def get_config(arg: str | None = None):
    c = base_config("conv_vae")
    c.data.name = "shapes"
    c.data.image_size = 64
    c.model.latent_dim = 10
    c.model.width = 32
    c.model.hidden = 256
    c.model.beta = 4.0
    c.train.reconstruction = "bernoulli"
    c.train.lr = 5e-4
    c.train.steps = 5000
    c.train.batch_size = 64
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.eval.every = 1000
    c.eval.best_metric = "mig"  # keep the most disentangled checkpoint (needs the 64-px data)
    c.eval.iwae_k = 10  # 64-px decodes are dear on a CPU; `genimg eval --iwae_k 1000` for more
    if arg == "quick":
        c.data.image_size = 32
        shrink_for_tests(c)
        c.eval.best_metric = "neg_elbo"
    if arg == "rd":  # docs/results.md's rate-distortion sweep: short runs, intervals at the end
        c.train.steps = 400
        c.train.lr = 1e-3
        c.train.log_every = c.train.checkpoint_every = c.eval.every = 400
    return c


def get_sweep(arg: str | None = None):
    """β × lr × seed (30 members); `quick`: β ∈ {1, 4} × seed ∈ {0, 1} (4 members); `rd`:
    β ∈ {0.5, 1, 2, 4, 8} × seed ∈ {0, 1} at one learning rate (10 members, docs/results.md's plot)."""
    from genimg_jax.sweeps.spec import axis, product

    if arg == "quick":
        return product(axis("model.beta", [1.0, 4.0]), axis("seed", [0, 1]))
    if arg == "rd":
        return product(axis("model.beta", [0.5, 1.0, 2.0, 4.0, 8.0]), axis("seed", [0, 1]))
    return product(
        axis("model.beta", [0.5, 1.0, 2.0, 4.0, 8.0]),
        axis("train.lr", [3e-4, 1e-3]),
        axis("seed", [0, 1, 2]),
    )
