"""The sweep report: rows read back from real member folders, aggregated points checked against
NumPy, the table files, and the plots as valid images."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from genimg_jax import families
from genimg_jax.core.errors import WorkdirError
from genimg_jax.sweeps import report
from genimg_jax.sweeps import spec as sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BETA_QUICK = os.path.join(REPO, "configs", "beta_vae_shapes.py") + ":quick"
VAE_QUICK = os.path.join(REPO, "configs", "vae_mnist.py") + ":quick"

# Final metrics of the 2β × 2-seed quick sweep, by member index (β=1: 0, 1; β=4: 2, 3).
KL = [10.0, 12.0, 4.0, 5.5]
RECON = [50.0, 54.0, 70.0, 71.0]


def write_member(workdir, base, member, metrics: dict, logged_to: int, finished: bool) -> str:
    """A member folder as a run leaves it: config.json, metrics.jsonl, summary.json if done."""
    folder = sweep.member_dir(str(workdir), member)
    os.makedirs(folder)
    config = sweep.apply(base, member.overrides)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        for step in range(config.train.log_every, logged_to + 1, config.train.log_every):
            scale = step / logged_to  # earlier rows differ from the final one
            row = {"step": step, **{k: v * scale for k, v in metrics.items()}}
            f.write(json.dumps(row | {"steps_per_sec": 9.0}) + "\n")
    if finished:
        summary = {"step": config.train.steps, "wall_time_sec": 3.5, "metrics": metrics}
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump(summary, f)
    return folder


def vae_metrics(kl: float, recon: float, beta: float) -> dict:
    loss = recon + beta * kl
    return {"loss": loss, "recon": recon, "kl": kl, "neg_elbo": recon + kl, "grad_norm": 1.0}


@pytest.fixture
def beta_sweep(tmp_path):
    """A finished 2β × 2-seed sweep with known final metrics and its sweep.json."""
    base, found = sweep.load(BETA_QUICK)
    for m in found:
        metrics = vae_metrics(KL[m.index], RECON[m.index], m.overrides["model.beta"])
        write_member(tmp_path, base, m, metrics, base.train.steps, finished=True)
    sweep.write_manifest(str(tmp_path), BETA_QUICK, found)
    return tmp_path


def test_collect_reads_one_row_per_member_with_final_metrics(beta_sweep):
    rows = report.collect(str(beta_sweep))
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["name"] for r in rows] == [
        "000_beta=1_seed=0",
        "001_beta=1_seed=1",
        "002_beta=4_seed=0",
        "003_beta=4_seed=1",
    ]
    assert rows[3]["overrides"] == {"model.beta": 4.0, "seed": 1}
    assert all(r["status"] == report.FINISHED for r in rows)
    assert [r["step"] for r in rows] == [12] * 4
    assert [r["metrics"]["kl"] for r in rows] == KL
    assert [r["metrics"]["recon"] for r in rows] == RECON
    assert rows[2]["metrics"]["loss"] == 70.0 + 4.0 * 4.0
    assert rows[0]["wall_time_sec"] == 3.5


def test_collect_without_sweep_json_parses_folder_names(beta_sweep):
    os.remove(beta_sweep / "sweep.json")
    rows = report.collect(str(beta_sweep))
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["overrides"] for r in rows] == [
        {"model.beta": 1.0, "seed": 0},
        {"model.beta": 1.0, "seed": 1},
        {"model.beta": 4.0, "seed": 0},
        {"model.beta": 4.0, "seed": 1},
    ]


def test_overrides_are_read_back_from_each_members_config(beta_sweep):
    """sweep.json names the fields; the values come from the member's own config.json."""
    found = sweep.members(
        sweep.product(sweep.axis("model.beta", [1.0, 4.0]), sweep.axis("seed", [0, 1]))
    )
    wrong = [sweep.Member(m.index, {**m.overrides, "model.beta": 99.0}, m.name) for m in found]
    sweep.write_manifest(str(beta_sweep), BETA_QUICK, wrong)
    rows = report.collect(str(beta_sweep))
    assert [r["overrides"]["model.beta"] for r in rows] == [1.0, 1.0, 4.0, 4.0]


def test_parse_name_handles_underscores_in_field_names():
    name = sweep.member_name(7, {"model.latent_dim": 4, "train.g_lr": 1e-3, "data.name": "a_b"})
    assert report.parse_name(name) == (7, {"latent_dim": "4", "g_lr": "0.001", "name": "a-b"})
    assert report.parse_name("report") == (None, {})


def test_rate_distortion_points_are_mean_and_std_over_seeds(beta_sweep):
    points = report.rate_distortion_points(report.collect(str(beta_sweep)))
    assert [p["beta"] for p in points] == [1.0, 4.0]
    for p, seeds in zip(points, ([0, 1], [2, 3])):
        kl, recon = np.take(KL, seeds), np.take(RECON, seeds)
        assert p["n"] == 2
        assert p["lr"] is None
        np.testing.assert_allclose(p["kl_mean"], kl.mean())
        np.testing.assert_allclose(p["kl_std"], kl.std(ddof=1))
        np.testing.assert_allclose(p["recon_mean"], recon.mean())
        np.testing.assert_allclose(p["recon_std"], recon.std(ddof=1))


def synthetic_row(index: int, overrides: dict, metrics: dict, status=report.FINISHED) -> dict:
    """A conv VAE member's row, as `report.collect` reads one."""
    return {
        "axes": families.get("conv_vae").sweep_axes,
        "index": index,
        "name": sweep.member_name(index, overrides),
        "overrides": overrides,
        "status": status,
        "step": 10,
        "steps": 10,
        "metrics": metrics,
        "wall_time_sec": 1.0,
    }


def test_rate_distortion_points_make_one_curve_per_lr_and_skip_unfinished():
    rng = np.random.default_rng(0)
    grid = sweep.product(
        sweep.axis("model.beta", [4.0, 1.0]),
        sweep.axis("train.lr", [3e-4, 1e-3]),
        sweep.axis("seed", [0, 1, 2]),
    )
    values = rng.uniform(1, 100, size=(len(grid), 2))
    rows = [
        synthetic_row(i, o, {"kl": float(kl), "recon": float(rc)})
        for i, (o, (kl, rc)) in enumerate(zip(grid, values))
    ]
    rows.append(
        synthetic_row(
            99,
            {"model.beta": 1.0, "train.lr": 3e-4, "seed": 3},
            {"kl": 1e6, "recon": 1e6},
            report.PARTIAL,
        )
    )
    points = report.rate_distortion_points(rows)
    assert [(p["lr"], p["beta"]) for p in points] == [
        (3e-4, 1.0),
        (3e-4, 4.0),
        (1e-3, 1.0),
        (1e-3, 4.0),
    ]
    assert len({p["curve"] for p in points}) == 2
    for p in points:
        sel = [
            i
            for i, o in enumerate(grid)
            if o["model.beta"] == p["beta"] and o["train.lr"] == p["lr"]
        ]
        assert p["n"] == 3
        np.testing.assert_allclose(p["kl_mean"], values[sel, 0].mean())
        np.testing.assert_allclose(p["kl_std"], values[sel, 0].std(ddof=1))
        np.testing.assert_allclose(p["recon_mean"], values[sel, 1].mean())
        np.testing.assert_allclose(p["recon_std"], values[sel, 1].std(ddof=1))


def test_metric_vs_lr_points_are_mean_and_std_over_seeds():
    grid = sweep.product(sweep.axis("train.lr", [1e-3, 3e-4]), sweep.axis("seed", [0, 1, 2]))
    losses = [5.0, 6.0, 8.0, 3.0, 3.5, 2.0]
    rows = [synthetic_row(i, o, {"loss": x}) for i, (o, x) in enumerate(zip(grid, losses))]
    points = report.metric_vs_lr_points(rows, "loss")
    assert [p["lr"] for p in points] == [3e-4, 1e-3]
    np.testing.assert_allclose(
        [p["mean"] for p in points], [np.mean(losses[3:]), np.mean(losses[:3])]
    )
    np.testing.assert_allclose(
        [p["std"] for p in points], [np.std(losses[3:], ddof=1), np.std(losses[:3], ddof=1)]
    )


def test_unfinished_members_show_as_partial_or_not_started(beta_sweep):
    _, found = sweep.load(BETA_QUICK)
    for m in found[2:]:
        folder = sweep.member_dir(str(beta_sweep), m)
        os.remove(os.path.join(folder, "summary.json"))
    # Member 2 logged up to step 8 of 12 (a run that was stopped); member 3 only wrote config.json.
    folder2 = sweep.member_dir(str(beta_sweep), found[2])
    with open(os.path.join(folder2, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 4, "kl": 9.0, "recon": 99.0}) + "\n")
        f.write(json.dumps({"step": 8, "kl": 7.0, "recon": 80.0}) + "\n")
        f.write('{"step": 12, "kl"')  # a line cut short by a kill
    os.remove(os.path.join(sweep.member_dir(str(beta_sweep), found[3]), "metrics.jsonl"))
    # A member listed in sweep.json whose folder does not exist yet.
    extra = sweep.Member(4, {"model.beta": 8.0, "seed": 0}, "004_beta=8_seed=0")
    sweep.write_manifest(str(beta_sweep), BETA_QUICK, [*found, extra])

    rows = report.collect(str(beta_sweep))
    status = [r["status"] for r in rows]
    assert status == ["finished", "finished", "partial", "not started", "not started"]
    assert rows[2]["step"] == 8
    assert rows[2]["metrics"] == {"kl": 7.0, "recon": 80.0}
    assert rows[2]["wall_time_sec"] is None
    assert rows[4]["overrides"] == {"model.beta": 8.0, "seed": 0}
    points = report.rate_distortion_points(rows)
    assert [(p["beta"], p["n"]) for p in points] == [(1.0, 2)]


def test_a_summary_written_at_preemption_is_partial(beta_sweep):
    folder = beta_sweep / "001_beta=1_seed=1"
    (folder / "summary.json").write_text(
        json.dumps({"step": 8, "wall_time_sec": 1.0, "metrics": {}})
    )
    rows = report.collect(str(beta_sweep))
    assert [r["status"] for r in rows] == ["finished", "partial", "finished", "finished"]


def test_write_table_writes_markdown_and_csv(beta_sweep, tmp_path):
    rows = report.collect(str(beta_sweep))
    md, path_csv = str(tmp_path / "t" / "summary.md"), str(tmp_path / "t" / "summary.csv")
    report.write_table(rows, md, path_csv)
    with open(path_csv) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    assert [float(r["kl"]) for r in table] == KL
    assert [float(r["model.beta"]) for r in table] == [1.0, 1.0, 4.0, 4.0]
    assert [r["status"] for r in table] == ["finished"] * 4
    with open(md) as f:
        text = f.read()
    assert "4 members: 4 finished, 0 partial, 0 not started" in text
    assert "| 003_beta=4_seed=1 |" in text


def assert_valid_png(path: str) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 300 <= width <= 3000 and 200 <= height <= 3000
        assert len(np.unique(np.asarray(image.convert("L")))) > 2  # not a blank canvas


def test_report_of_a_beta_sweep_writes_table_and_rate_distortion_plot(beta_sweep):
    paths = report.report(str(beta_sweep))
    out = beta_sweep / "report"
    assert paths == [
        str(out / "summary.md"),
        str(out / "summary.csv"),
        str(out / "rate_distortion.png"),
    ]
    assert_valid_png(paths[2])
    text = (out / "summary.md").read_text()
    assert "Rate-distortion" in text and "rate_distortion.png" in text


def test_report_of_an_lr_sweep_plots_loss_vs_lr(tmp_path):
    base, found = sweep.load(VAE_QUICK)
    for m in found:
        write_member(tmp_path, base, m, vae_metrics(3.0, 90.0 + m.index, 1.0), 12, finished=True)
    paths = report.report(str(tmp_path))  # no sweep.json: names are parsed
    assert [os.path.basename(p) for p in paths] == ["summary.md", "summary.csv", "loss_vs_lr.png"]
    assert_valid_png(paths[2])


def test_report_of_an_empty_workdir_says_to_run_the_sweep(tmp_path):
    with pytest.raises(WorkdirError, match="run the sweep first"):
        report.report(str(tmp_path))


def test_a_checkpoint_beyond_the_last_logged_row_sets_the_step(beta_sweep):
    folder = beta_sweep / "003_beta=4_seed=1"
    os.remove(folder / "summary.json")
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 4, "kl": 1.0, "recon": 2.0}) + "\n")
    os.makedirs(folder / "checkpoints" / "6")
    row = report.collect(str(beta_sweep))[3]
    assert (row["status"], row["step"], row["metrics"]) == ("partial", 6, {"kl": 1.0, "recon": 2.0})


STUDY_QUICK = os.path.join(REPO, "configs", "disentanglement_study.py") + ":quick"


def test_a_study_reports_box_plots_per_method_and_rate_distortion_per_method(tmp_path):
    """Two methods x two values x one seed with known scores: the medians and quartiles are
    NumPy's over each method's members, and both figures are images."""
    base, found = sweep.load(STUDY_QUICK)
    mig = [0.1, 0.3, 0.2, 0.6]
    for m in found:
        folder = write_member(
            tmp_path,
            base,
            m,
            vae_metrics(5.0 + m.index, 60.0 - m.index, 1.0),
            base.train.steps,
            finished=True,
        )
        path = os.path.join(folder, "summary.json")
        with open(path) as f:
            summary = json.load(f)
        summary["eval"] = {"mig": mig[m.index], "sap": 0.05 * m.index}
        with open(path, "w") as f:
            json.dump(summary, f)
    sweep.write_manifest(str(tmp_path), STUDY_QUICK, found)

    rows = report.collect(str(tmp_path))
    points = {(p["method"], p["score"]): p for p in report.study_points(rows)}
    assert set(points) == {(m, s) for m in ("beta_tcvae", "factor_vae") for s in ("mig", "sap")}
    factor = points[("factor_vae", "mig")]
    assert factor["median"] == pytest.approx(np.median(mig[2:]))
    assert factor["q1"] == pytest.approx(np.percentile(mig[2:], 25)) and factor["n"] == 2
    rd = report.method_rate_distortion_points(rows)
    assert [(p["method"], p["kl_mean"]) for p in rd] == [
        ("beta_tcvae", 5.0),
        ("beta_tcvae", 6.0),
        ("factor_vae", 7.0),
        ("factor_vae", 8.0),
    ]

    written = report.report(str(tmp_path))
    for name in ("study_scores.png", "study_rate_distortion.png"):
        path = os.path.join(str(tmp_path), "report", name)
        assert path in written and Image.open(path).size[0] > 100
    with open(os.path.join(str(tmp_path), "report", "summary.md")) as f:
        assert "Disentanglement per method" in f.read()


def test_what_is_plotted_comes_from_the_members_family():
    """`Family.sweep_axes`: a GAN sweep over g_lr plots its D and G losses against it, and has
    no rate-distortion curve even when its members log kl and recon."""
    grid = sweep.product(sweep.axis("train.g_lr", [1e-4, 2e-4]), sweep.axis("seed", [0, 1]))
    rows = [
        synthetic_row(i, o, {"d_loss": float(i), "g_loss": 1.0, "kl": 1.0, "recon": 2.0})
        | {"axes": families.get("dcgan").sweep_axes}
        for i, o in enumerate(grid)
    ]
    assert report.lr_field(rows) == "train.g_lr"
    assert [p["lr"] for p in report.metric_vs_lr_points(rows, "d_loss")] == [1e-4, 2e-4]
    assert report.axes(rows).losses == ("d_loss", "g_loss")
    assert report.rate_distortion_points(rows) == [] and report.study_points(rows) == []
