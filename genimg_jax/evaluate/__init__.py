"""Scoring runs: `scoring.py` turns a family's scorer into score(state) and writes the scores,
`tracker.py` scores a run at its evaluations and keeps its best checkpoint, `best.py` decides
what is better. The metrics are in `genimg_jax.metrics`, the feature networks in
`genimg_jax.features`."""
