"""The report of a sweep: one row per member (status, final step, final metrics, wall time), a
table as Markdown and CSV, and the plots that apply (rate-distortion for β, loss vs lr; for a
sweep over VAE objectives, a study like configs/disentanglement_study.py: box plots of every
disentanglement score per method and a rate-distortion curve per method).

    genimg report runs/bvae_sweep     # writes runs/bvae_sweep/report/*

Reads, in the sweep workdir: `sweep.json` (if present; else member names are parsed), and in
each member folder `config.json`, `summary.json`, `metrics.jsonl` and `checkpoints/<step>/`.
"""

import csv
import json
import os
from collections.abc import Iterable
from typing import Any

import ml_collections
import numpy as np

from genimg_jax import config as config_lib
from genimg_jax import families
from genimg_jax.core.errors import GenimgError, WorkdirError
from genimg_jax.core.family import SweepAxes
from genimg_jax.metrics.disentanglement import STUDY_SCORES  # a study's box plots, in order
from genimg_jax.sweeps import spec as sweep_lib
from genimg_jax.training.outputs import read_metrics

FINISHED, PARTIAL, NOT_STARTED = "finished", "partial", "not started"
REPLICATE_FIELD = "seed"  # members that differ only in this field are averaged
REPORT_DIR = "report"

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Reading a sweep workdir.


def parse_name(name: str) -> tuple[int | None, dict[str, str]]:
    """'003_beta=4_lr=0.001' -> (3, {'beta': '4', 'lr': '0.001'}); values hold no '_' or '='."""
    head, _, rest = name.partition("_")
    if not head.isdigit():
        return None, {}
    pieces = rest.split("=") if rest else []
    out, key = {}, pieces[0] if pieces else ""
    for i, piece in enumerate(pieces[1:], start=1):
        value, _, next_key = (piece, "", "") if i == len(pieces) - 1 else piece.partition("_")
        out[key] = value
        key = next_key
    return int(head), out


def parse_value(text: str) -> Any:
    """A value spelled by `sweep.format_value` back as int, float, bool or str."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """{'train.steps': 1000, ...} for every leaf field."""
    out = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _fields_from_name(parsed: dict[str, str], leaves: dict[str, Any]) -> dict[str, Any]:
    """Short names from a folder name mapped to dotted fields (the one whose value matches)."""
    out = {}
    for short, text in parsed.items():
        candidates = sorted(f for f in leaves if f.split(".")[-1] == short)
        matching = [f for f in candidates if sweep_lib.format_value(leaves[f]) == text]
        field = (matching or candidates or [short])[0]
        out[field] = leaves.get(field, parse_value(text))
    return out


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _checkpoint_steps(member_dir: str) -> list[int]:
    try:
        names = os.listdir(os.path.join(member_dir, "checkpoints"))
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def member_progress(member_dir: str, steps: int | None) -> Row:
    """{status, step, metrics, wall_time_sec} of one member folder against its `steps`."""
    summary = _read_json(os.path.join(member_dir, "summary.json"))
    summary = summary if isinstance(summary, dict) and "step" in summary else None
    logged = read_metrics(os.path.join(member_dir, "metrics.jsonl"))
    saved = _checkpoint_steps(member_dir)
    step, metrics = None, {}
    if logged:  # the training row and the scores logged at the last step
        step = int(logged[-1]["step"])
        for row in logged:
            if int(row["step"]) == step:
                metrics |= {k: v for k, v in row.items() if k != "step"}
    if summary is not None and (step is None or int(summary["step"]) >= step):
        step, metrics = int(summary["step"]), dict(summary.get("metrics", {}))
        metrics |= {f"eval/{k}": v for k, v in summary.get("eval", {}).items()}
    if saved and (step is None or saved[-1] > step):
        step = saved[-1]
    finished = steps is not None and sweep_lib.is_finished(member_dir, steps)
    status = FINISHED if finished else PARTIAL if step is not None else NOT_STARTED
    wall = summary.get("wall_time_sec") if summary else None
    return {"status": status, "step": step or 0, "metrics": metrics, "wall_time_sec": wall}


def _member_row(sweep_workdir: str, name: str, index: int | None, overrides: dict | None) -> Row:
    """The row of one member; `overrides` (from sweep.json) name the fields to read back."""
    folder = os.path.join(sweep_workdir, name)
    config_path = os.path.join(folder, "config.json")
    config = None
    if os.path.exists(config_path):
        try:
            config = config_lib.load_saved(config_path)
        except (GenimgError, ValueError, KeyError, TypeError, AttributeError):
            config = None  # a config.json cut short: report the progress that can be seen
    leaves = _leaves(config) if config is not None else {}
    if overrides is None:
        parsed_index, parsed = parse_name(name)
        index = parsed_index
        overrides = _fields_from_name(parsed, leaves)
    else:
        overrides = {f: leaves.get(f, v) for f, v in overrides.items()}
    steps = leaves.get("train.steps")
    row = {"index": index, "name": name, "overrides": overrides, "steps": steps}
    row["axes"] = families.of(config).sweep_axes if config is not None else SweepAxes()
    return row | member_progress(folder, steps)


def collect(sweep_workdir: str) -> list[Row]:
    """One row per sweep member, in index order: members listed in sweep.json (started or not)
    and every member folder holding a config.json."""
    listed = sweep_lib.read_manifest(sweep_workdir) or []
    rows = [_member_row(sweep_workdir, m.name, m.index, m.overrides) for m in listed]
    known = {m.name for m in listed}
    try:
        names = sorted(os.listdir(sweep_workdir))
    except OSError:
        names = []
    for name in names:
        if name not in known and os.path.isfile(os.path.join(sweep_workdir, name, "config.json")):
            rows.append(_member_row(sweep_workdir, name, None, None))
    return sorted(rows, key=lambda r: (r["index"] is None, r["index"] or 0, r["name"]))


# --------------------------------------------------------------------------------------------
# Tables.


def _union(keys: Iterable[Iterable[str]]) -> list[str]:
    out: dict[str, None] = {}
    for group in keys:
        out |= dict.fromkeys(group)
    return list(out)


def table_columns(rows: list[Row]) -> list[str]:
    """Column names: index, name, the sweep's fields, status, steps, wall time, metrics."""
    fields = _union(r["overrides"] for r in rows)
    metrics = _union(r["metrics"] for r in rows)
    head = ["index", "name", *fields, "status", "step", "steps", "wall_time_sec"]
    return head + [m for m in metrics if m not in head]


def flat_row(row: Row) -> dict[str, Any]:
    """A row with its overrides and metrics as top-level columns."""
    base = {k: v for k, v in row.items() if k not in ("overrides", "metrics", "axes")}
    return row["metrics"] | row["overrides"] | base


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(headers: list[str], cells: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in line) + " |" for line in cells]
    return "\n".join(lines) + "\n"


def write_table(rows: list[Row], path_md: str, path_csv: str) -> None:
    """Writes the rows as a Markdown table (with a count per status) and as CSV."""
    columns = table_columns(rows)
    flat = [flat_row(r) for r in rows]
    for path in (path_md, path_csv):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    counts = {s: sum(r["status"] == s for r in rows) for s in (FINISHED, PARTIAL, NOT_STARTED)}
    with open(path_md, "w") as f:
        f.write(f"{len(rows)} members: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        f.write("\n\n" + markdown_table(columns, [[r.get(c) for c in columns] for r in flat]))
    with open(path_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in flat)


# --------------------------------------------------------------------------------------------
# Aggregation over seeds (pure).


def axes(rows: list[Row]) -> SweepAxes:
    """What the members' families plot (`Family.sweep_axes`), merged over the rows."""
    found = [r["axes"] for r in rows if "axes" in r]
    first = lambda name: next((getattr(a, name) for a in found if getattr(a, name)), "")
    union = lambda name: tuple(dict.fromkeys(x for a in found for x in getattr(a, name)))
    return SweepAxes(first("rate"), first("method"), union("learning_rates"), union("losses"))


def varies(rows: list[Row], field: str) -> bool:
    """Whether the rows hold more than one value of `field`."""
    return len({r["overrides"][field] for r in rows if field in r["overrides"]}) > 1


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    x = np.asarray(values, np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


def _curve(overrides: dict, drop: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    """The fields that are neither replicated nor on the x axis, e.g. (('train.lr', 1e-3),)."""
    return tuple((f, v) for f, v in overrides.items() if f not in drop and f != REPLICATE_FIELD)


def _label(curve: tuple[tuple[str, Any], ...]) -> str:
    """'lr=0.001' for a curve's fields."""
    return " ".join(f"{f.split('.')[-1]}={sweep_lib.format_value(v)}" for f, v in curve)


def _order(key: tuple) -> tuple:
    """Sorts groups by their values (numbers numerically), then by their spelling."""
    curve, value = key
    return tuple(
        (isinstance(v, str), v if not isinstance(v, str) else 0, str(v)) for _, v in curve
    ) + ((isinstance(value, str), value if not isinstance(value, str) else 0, str(value)),)


def _finished_with(rows: list[Row], field: str, metrics: Iterable[str]) -> list[Row]:
    return [
        r
        for r in rows
        if r["status"] == FINISHED
        and field in r["overrides"]
        and all(isinstance(r["metrics"].get(m), (int, float)) for m in metrics)
    ]


def _groups(rows: list[Row], field: str) -> list[tuple[str, Any, list[Row]]]:
    """(curve label, value of `field`, rows) in order; the rows of a group differ only in seed."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        key = (_curve(r["overrides"], (field,)), r["overrides"][field])
        groups.setdefault(key, []).append(r)
    return [(_label(curve), v, groups[(curve, v)]) for curve, v in sorted(groups, key=_order)]


def rate_distortion_points(rows: list[Row]) -> list[dict]:
    """One point per (curve, β) over the finished members: KL and recon mean ± std over seeds."""
    points, rate, lrs = [], axes(rows).rate, axes(rows).learning_rates
    if not rate:
        return points
    groups = _groups(_finished_with(rows, rate, ("kl", "recon")), rate)
    for curve, beta, group in groups:
        kl_mean, kl_std = _mean_std([r["metrics"]["kl"] for r in group])
        recon_mean, recon_std = _mean_std([r["metrics"]["recon"] for r in group])
        points.append(
            {
                "beta": beta,
                "lr": group[0]["overrides"].get(lrs[0]) if lrs else None,
                "curve": curve,
                "kl_mean": kl_mean,
                "kl_std": kl_std,
                "recon_mean": recon_mean,
                "recon_std": recon_std,
                "n": len(group),
            }
        )
    return points


def lr_field(rows: list[Row]) -> str | None:
    """The learning-rate field the sweep varies, if any."""
    return next((f for f in axes(rows).learning_rates if varies(rows, f)), None)


def metric_vs_lr_points(rows: list[Row], metric: str) -> list[dict]:
    """One point per (curve, lr) over the finished members: `metric` mean ± std over seeds."""
    learning_rates = axes(rows).learning_rates
    field = lr_field(rows) or next(
        (f for f in learning_rates if any(f in r["overrides"] for r in rows)), None
    )
    if field is None:
        return []
    points = []
    groups = _groups(_finished_with(rows, field, (metric,)), field)
    for curve, lr, group in groups:
        mean, std = _mean_std([r["metrics"][metric] for r in group])
        points.append(
            {"lr": lr, "field": field, "curve": curve, "mean": mean, "std": std, "n": len(group)}
        )
    return points


def study_points(rows: list[Row]) -> list[dict]:
    """Per method (in sweep order), each study score's finished values over every seed and
    hyperparameter value: median, quartiles and n."""
    methods: dict[str, list[Row]] = {}
    field = axes(rows).method
    for r in rows:
        if field and r["status"] == FINISHED and field in r["overrides"]:
            methods.setdefault(r["overrides"][field], []).append(r)
    points = []
    for method, group in methods.items():
        for score in STUDY_SCORES:
            values = [r["metrics"].get(f"eval/{score}") for r in group]
            values = [v for v in values if isinstance(v, (int, float))]
            if not values:
                continue
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            points.append(
                {
                    "method": method,
                    "score": score,
                    "median": float(median),
                    "q1": float(q1),
                    "q3": float(q3),
                    "n": len(values),
                    "values": values,
                }
            )
    return points


def method_rate_distortion_points(rows: list[Row]) -> list[dict]:
    """One point per (method, hyperparameter values) over the finished members: KL and recon
    mean ± std over seeds, in the order of the swept values."""
    points, field = [], axes(rows).method
    for method in dict.fromkeys(r["overrides"].get(field) for r in rows) if field else ():
        group = [r for r in rows if r["overrides"].get(field) == method]
        group = _finished_with(group, field, ("kl", "recon"))
        settings: dict[tuple, list[Row]] = {}
        for r in group:
            settings.setdefault(_curve(r["overrides"], (field,)), []).append(r)
        for setting in sorted(settings, key=lambda c: _order((c, 0))):
            members = settings[setting]
            kl_mean, kl_std = _mean_std([r["metrics"]["kl"] for r in members])
            recon_mean, recon_std = _mean_std([r["metrics"]["recon"] for r in members])
            points.append(
                {
                    "method": method,
                    "setting": _label(setting),
                    "kl_mean": kl_mean,
                    "kl_std": kl_std,
                    "recon_mean": recon_mean,
                    "recon_std": recon_std,
                    "n": len(members),
                }
            )
    return points


# --------------------------------------------------------------------------------------------
# Plots (matplotlib's Agg canvas; no pyplot state).


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, ax: Any, path_png: str, curves: int) -> str:
    if curves > 1:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path_png)), exist_ok=True)
    fig.savefig(path_png)
    return path_png


def _by_curve(points: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in points:
        out.setdefault(p["curve"], []).append(p)
    return out


def _rate_distortion_curve(ax: Any, group: list[dict], label: str | None) -> None:
    """KL (x) against reconstruction (y), mean ± std bars, joined in the group's order."""
    ax.errorbar(
        [p["kl_mean"] for p in group],
        [p["recon_mean"] for p in group],
        xerr=[p["kl_std"] for p in group],
        yerr=[p["recon_std"] for p in group],
        fmt="o-",
        capsize=3,
        label=label,
    )


def plot_rate_distortion(rows: list[Row], path_png: str) -> str:
    """KL (rate) vs reconstruction (distortion), one point per β (mean ± std over seeds),
    labelled and joined in β order; one curve per learning rate (or other varied field)."""
    points = rate_distortion_points(rows)
    if not points:
        raise ValueError(
            "no finished member with its family's rate weight (Family.sweep_axes), kl and recon"
        )
    fig, ax = _figure()
    curves = _by_curve(points)
    for curve, group in curves.items():
        group = sorted(group, key=lambda p: p["beta"])
        _rate_distortion_curve(ax, group, curve or None)
        for p in group:
            ax.annotate(
                f"β={sweep_lib.format_value(p['beta'])}",
                (p["kl_mean"], p["recon_mean"]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
    n = max(p["n"] for p in points)
    ax.set_title(f"rate-distortion (mean ± std over {n} seeds)")
    ax.set_xlabel("KL(q(z|x) || p(z)), nats (rate)")
    ax.set_ylabel("reconstruction loss, nats (distortion)")
    return _save(fig, ax, path_png, len(curves))


def plot_metric_vs_lr(rows: list[Row], path_png: str, metric: str) -> str:
    """Final `metric` against the learning rate (log x), mean ± std over seeds."""
    points = metric_vs_lr_points(rows, metric)
    if not points:
        raise ValueError(f"no finished member with a learning rate and {metric} to plot")
    fig, ax = _figure()
    curves = _by_curve(points)
    for curve, group in curves.items():
        group = sorted(group, key=lambda p: p["lr"])
        ax.errorbar(
            [p["lr"] for p in group],
            [p["mean"] for p in group],
            yerr=[p["std"] for p in group],
            fmt="o-",
            capsize=3,
            label=curve or None,
        )
    ax.set_xscale("log")
    ax.set_title(f"final {metric} vs learning rate (mean ± std over seeds)")
    ax.set_xlabel(points[0]["field"])
    ax.set_ylabel(f"final {metric}")
    return _save(fig, ax, path_png, len(curves))


def plot_study_boxes(rows: list[Row], path_png: str) -> str:
    """One panel per disentanglement score: a box per method over all its seeds and
    hyperparameter values (Locatello et al. 2019's figure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = study_points(rows)
    if not points:
        raise ValueError("no finished member of a study with disentanglement scores to plot")
    scores = list(dict.fromkeys(p["score"] for p in points))
    methods = list(dict.fromkeys(p["method"] for p in points))
    cols = min(3, len(scores))
    rows_n = -(-len(scores) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows_n), dpi=100)
    FigureCanvasAgg(fig)
    for i, score in enumerate(scores):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        by_method = {p["method"]: p["values"] for p in points if p["score"] == score}
        shown = [m for m in methods if m in by_method]
        ax.boxplot([by_method[m] for m in shown], tick_labels=shown)
        ax.set_title(score)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path_png)), exist_ok=True)
    fig.savefig(path_png)
    return path_png


def plot_method_rate_distortion(rows: list[Row], path_png: str) -> str:
    """KL vs reconstruction per method: one curve through its hyperparameter values (mean ±
    std over seeds)."""
    points = method_rate_distortion_points(rows)
    if not points:
        raise ValueError("no finished member of a study with kl and recon to plot")
    fig, ax = _figure()
    methods = list(dict.fromkeys(p["method"] for p in points))
    for method in methods:
        _rate_distortion_curve(ax, [p for p in points if p["method"] == method], method)
    ax.set_title("rate-distortion per method (mean ± std over seeds)")
    ax.set_xlabel("KL(q(z|x) || p(z)), nats (rate)")
    ax.set_ylabel("reconstruction loss, nats (distortion)")
    return _save(fig, ax, path_png, len(methods))


# --------------------------------------------------------------------------------------------
# The whole report.


def _study_section(points: list[dict], rd: list[dict]) -> str:
    """Markdown: per method and score, the median and quartiles over members; the per-method
    rate-distortion points."""
    text = ""
    if points:
        keys = ["method", "score", "median", "q1", "q3", "n"]
        text += "\n## Disentanglement per method (median, quartiles over seeds and values)\n\n"
        text += markdown_table(keys, [[p[k] for k in keys] for p in points])
        text += "\n![scores per method](study_scores.png)\n"
    if rd:
        keys = ["method", "setting", "kl_mean", "kl_std", "recon_mean", "recon_std", "n"]
        text += "\n## Rate-distortion per method (mean ± std over seeds)\n\n"
        text += markdown_table(keys, [[p[k] for k in keys] for p in rd])
        text += "\n![rate-distortion per method](study_rate_distortion.png)\n"
    return text


def _aggregate_sections(rd: list[dict], lr: dict[str, list[dict]]) -> str:
    """Markdown sections for the aggregated points."""
    text = ""
    if rd:
        keys = ["curve", "beta", "kl_mean", "kl_std", "recon_mean", "recon_std", "n"]
        text += "\n## Rate-distortion (mean ± std over seeds)\n\n"
        text += markdown_table(keys, [[p[k] for k in keys] for p in rd])
        text += "\n![rate-distortion](rate_distortion.png)\n"
    for metric, points in lr.items():
        keys = ["curve", "lr", "mean", "std", "n"]
        text += f"\n## Final {metric} vs learning rate (mean ± std over seeds)\n\n"
        text += markdown_table(keys, [[p[k] for k in keys] for p in points])
        text += f"\n![{metric} vs lr]({metric}_vs_lr.png)\n"
    return text


def report(sweep_workdir: str) -> list[str]:
    """Writes report/summary.md, report/summary.csv and the plots that apply; returns the paths."""
    rows = collect(sweep_workdir)
    if not rows:
        raise WorkdirError(
            f"no sweep members in {sweep_workdir} (no sweep.json and no folder with config.json):"
            " run the sweep first, or give the sweep's workdir"
        )
    out = os.path.join(sweep_workdir, REPORT_DIR)
    md, csv_path = os.path.join(out, "summary.md"), os.path.join(out, "summary.csv")
    write_table(rows, md, csv_path)
    written = [md, csv_path]
    plotted = axes(rows)
    rd = rate_distortion_points(rows) if plotted.rate and varies(rows, plotted.rate) else []
    if rd:
        written.append(plot_rate_distortion(rows, os.path.join(out, "rate_distortion.png")))
    lr_points = {}
    if lr_field(rows) is not None:
        for metric in plotted.losses:
            points = metric_vs_lr_points(rows, metric)
            if points:
                lr_points[metric] = points
                path = os.path.join(out, f"{metric}_vs_lr.png")
                written.append(plot_metric_vs_lr(rows, path, metric))
    study, study_rd = [], []
    if plotted.method and varies(rows, plotted.method):
        study, study_rd = study_points(rows), method_rate_distortion_points(rows)
        if study:
            written.append(plot_study_boxes(rows, os.path.join(out, "study_scores.png")))
        if study_rd:
            path = os.path.join(out, "study_rate_distortion.png")
            written.append(plot_method_rate_distortion(rows, path))
    with open(md, "a") as f:
        f.write(_aggregate_sections(rd, lr_points) + _study_section(study, study_rd))
    return written
