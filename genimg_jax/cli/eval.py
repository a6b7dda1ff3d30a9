"""`genimg eval --workdir W [--checkpoint latest|best]`: the scores of the run's family
(`train.tracker.make_scorer`) for a checkpoint, printed and written next to it as `eval_<step>.json`."""

import jax
import ml_collections

from genimg_jax.training import member, tracker


def evaluate_workdir(
    config: ml_collections.ConfigDict, workdir: str, which: str = "latest"
) -> dict[str, float]:
    """Scores of the run's latest (or best) checkpoint, also written to `eval_<step>.json`
    (`eval_<step>_best.json`)."""
    state = member.restore(config, workdir, which)
    step = int(jax.device_get(state.step))
    scores = tracker.make_scorer(config)(state)
    tracker.write_scores(workdir, step, scores, "best" if which == "best" else "")
    return {"step": step, **scores}
