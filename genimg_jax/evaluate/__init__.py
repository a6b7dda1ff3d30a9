"""Scoring runs: `scoring.py` turns a family's scorer into score(state) and writes the scores,
`tracker.py` scores a run at its evaluations and keeps its best checkpoint, `best.py` decides
what is better, `ground_truth.py` gives the data's generative process to the disentanglement
scores. The metrics are in `genimg_jax.metrics`, the feature networks in
`genimg_jax.features`."""
