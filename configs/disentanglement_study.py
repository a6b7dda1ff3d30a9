"""Locatello et al. 2019's unsupervised study ("Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations"; disentanglement_lib's
`unsupervised_study_v1`) on the procedural shapes data set: six methods, six values of each
one's hyperparameter, seeds; every member scored by MIG, DCI, BetaVAE, FactorVAE, SAP and
modularity/explicitness at the end of its run.

    genimg sweep --config configs/disentanglement_study.py:small --workdir runs/study --vectorize
    genimg report --workdir runs/study      # box plots per method, rate-distortion curves

`--vectorize` trains the members of one method (they differ only in traced hyperparameters and
the seed) as one program, method after method. The full grid (`get_sweep()`: 6 x 6 x 50 = 1800
members of 300k steps) is for accelerators; `:small` fits this project's 2-core CPU in about
an hour; `:quick` is the tests'.
"""

from genimg_jax.config import base_config, shrink_for_tests

# method -> (the swept field, its six values, fields fixed for the method, a field tied to the
# swept one as (field, factor)), as in the paper
METHODS = {
    "beta_vae": ("model.beta", [1.0, 2.0, 4.0, 6.0, 8.0, 16.0], {}, None),
    "annealed_vae": (
        "model.c_max",
        [5.0, 10.0, 25.0, 50.0, 75.0, 100.0],
        {"model.gamma": 1000.0},
        None,
    ),
    "factor_vae": ("model.gamma", [10.0, 20.0, 30.0, 40.0, 50.0, 100.0], {}, None),
    "dip_vae_i": (
        "model.lambda_od",
        [1.0, 2.0, 5.0, 10.0, 20.0, 50.0],
        {},
        ("model.lambda_d", 10.0),
    ),
    "dip_vae_ii": (
        "model.lambda_od",
        [1.0, 2.0, 5.0, 10.0, 20.0, 50.0],
        {},
        ("model.lambda_d", 1.0),
    ),
    "beta_tcvae": ("model.beta", [1.0, 2.0, 4.0, 6.0, 8.0, 10.0], {}, None),
}
# how each size cuts the grid: (values of each method, seeds, methods)
SIZES = {
    None: (6, 50, tuple(METHODS)),
    "small": (3, 2, tuple(METHODS)),
    "quick": (2, 1, ("beta_tcvae", "factor_vae")),
}


def get_config(arg: str | None = None):
    c = base_config("conv_vae")
    c.data.name = "shapes"
    c.data.image_size = 64
    c.model.latent_dim = 10
    c.model.width = 32
    c.model.hidden = 256
    c.model.c_steps = 100_000  # AnnealedVAE's capacity reaches C_max here (disentanglement_lib)
    c.train.reconstruction = "bernoulli"
    c.train.optimizer = "adam"
    c.train.lr = 1e-4
    c.train.batch_size = 64
    c.train.steps = 300_000
    c.train.log_every = 1000
    c.train.checkpoint_every = 10_000
    c.eval.every = c.train.steps  # the study scores each member once, at the end
    c.eval.scores = True
    c.eval.iwae_k = 10
    c.eval.best_metric = ""
    c.eval.disentanglement_scale = 1.0  # the study's sample counts (metrics.disentanglement)
    if arg == "small":  # about an hour on 2 CPU cores for the 36-member `:small` sweep
        c.data.image_size = 32
        c.model.width = 16
        c.model.hidden = 64
        c.model.disc_hidden = 256
        c.model.disc_layers = 3
        c.model.c_steps = 1500
        c.train.lr = 1e-3
        c.train.steps = 3000
        c.train.log_every = 100
        c.train.checkpoint_every = c.eval.every = 3000
        c.eval.examples = 256
        c.eval.disentanglement_scale = 0.02
    if arg == "quick":
        c.data.image_size = 32
        shrink_for_tests(c)
        c.model.c_steps = 6
        c.eval.scores = False
    return c


def get_sweep(arg: str | None = None):
    """For each method of `SIZES[arg]`: its swept field over the first values x the seeds, the
    method's fixed fields alongside (DIP-VAE's λ_d follows λ_od: 10 λ_od for I, λ_od for II)."""
    from genimg_jax.sweeps.spec import axis, chain, product, zipped

    num_values, num_seeds, methods = SIZES[arg]
    grids = []
    for method in methods:
        field, values, fixed, tied = METHODS[method]
        values = values[:: len(values) // num_values][:num_values]
        swept = axis(field, values)
        if tied:
            tied_field, factor = tied
            swept = zipped(swept, axis(tied_field, [factor * v for v in values]))
        constants = [{"model.objective": method, **fixed}]
        grids.append(product(constants, swept, axis("seed", list(range(num_seeds)))))
    return chain(*grids)
