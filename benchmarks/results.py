"""Regenerates docs/results.md: every shipped config (configs/*.py) at its default steps and the
main job at `model.num_classes=0` (the seed's unconditional setting, beside the searched
unconditional config), one `genimg train` process at a time, each row with its commit, command,
wall time, the 1-minute load average as it started, the scores of its summary.json and its last
sample grid (kept as OUT/NAME.png and copied to results/ beside the page once the last job has
ended, so that every job records the commit's own tree, not one made `-dirty` by the grids of the
jobs before it). Its `## Shipped configs` section and header are rewritten; the other `## `
sections are hand-written and kept. `--config.a.b=v` arguments go to every job. A dirty tree is
refused (`--allow-dirty`: rows marked `-dirty`). Each finished job's row is kept beside its
workdir (OUT/NAME.row.json), so a regeneration stopped part way goes on with `--resume`: finished
jobs keep their rows, an unfinished one is started again from scratch.
(A part run with `--only` rewrites the page too, which leaves the tree dirty for the next part:
`git checkout docs/results.md` first, so that no row is marked `-dirty`.)

  .venv/bin/python benchmarks/results.py            # hours: the real table
  .venv/bin/python benchmarks/results.py --resume   # after an interruption: the jobs left
  .venv/bin/python benchmarks/results.py --dry-run  # the commands
"""

import argparse
import datetime
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFLINE = ("bundled_mnist", "shapes")
# jobs that are a shipped config with overrides: the main job as the seed set it, unconditional
EXTRA = {"dcgan_mnist_classes0": ("dcgan_mnist", ["--config.model.num_classes=0"])}
HEAVY = {  # jobs the whole table leaves out (`--only NAME` runs one)
    "disentanglement_study": "accelerator work: 300,000 steps (not run here; `--only` runs it)",
    "vqgan_shapes": (
        "over an hour on 2 CPU cores: 1.1 steps/s over its first 300 of 4,000 steps, before its D"
        " starts (not run here; `--only` runs it)"
    ),
}
IDLE = 0.5
SECTION = "## Shipped configs"
GAN = ("fid", "kid", "precision", "recall", "classes_hit", "inception_score")
VAE = ("neg_elbo", "iwae", "iwae_k", "iwae_bits_per_dim", "mig", "dci_disentanglement")
AUTOENCODER = ("rfid", "psnr", "ssim", "lpips", "codebook_usage", "codebook_perplexity")
TAIL = ("wall time", "load", "commit", "grid", "command")
COMMON = ["--config.compile_cache_dir="]  # no compilation cache: every job compiles cold


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/results", help="workdirs OUT/NAME (from the repo root)")
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "results.md"))
    p.add_argument("--only", default="", help="NAME[,NAME]: config stems or " + ", ".join(EXTRA))
    p.add_argument("--steps", type=int, help="every job's train.steps (testing: not the table)")
    p.add_argument("--data-dir", default="", help="prepared TFDS data (cifar10, celeb_a)")
    p.add_argument("--settle", type=float, default=180, help="max s to wait for load <= 0.5")
    p.add_argument("--allow-dirty", action="store_true")
    p.add_argument("--resume", action="store_true", help="keep finished jobs' rows, redo the rest")
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    args, extra = p.parse_known_args(argv)
    args.argv, args.data_dir = argv, args.data_dir and os.path.abspath(args.data_dir)
    if bad := [a for a in extra if not a.startswith("--config.")]:
        p.error(f"unknown arguments {bad}")
    return args, extra


def git(*argv) -> str:
    done = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def head_commit() -> str:
    """HEAD, with `-dirty` when tracked files differ from it (as the runs' run_record.json)."""
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "HEAD") + "-dirty" * bool(dirty)


def plan(args, extra) -> list[dict]:
    """Every job, in order: {name, argv, steps} to run or {name, skip} with the reason."""
    from genimg_jax.config import from_file

    names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs/*.py")))
    first = ["dcgan_mnist", "dcgan_mnist_uncond", *EXTRA]
    names = first + [n for n in names if n not in first]
    only = [n for n in args.only.split(",") if n]
    if unknown := set(only) - set(names):
        sys.exit(f"--only: no job {sorted(unknown)}; jobs: {', '.join(names)}")
    genimg = os.path.relpath(os.path.join(os.path.dirname(sys.executable), "genimg"), REPO)
    jobs = []
    for name in only or names:
        stem, own = EXTRA.get(name, (name, []))
        config = from_file(os.path.join(REPO, "configs", f"{stem}.py"))
        data, steps = config.data.name, args.steps or config.train.steps
        own = own + [f"--config.train.steps={args.steps}"] * bool(args.steps)
        if data == "folder":
            skip = "a template: needs your folder of images (not run here)"
        elif data not in OFFLINE:
            own += [f"--config.data.data_dir={args.data_dir}"] * bool(args.data_dir)
            ready = args.data_dir and os.path.isdir(os.path.join(args.data_dir, data))
            skip = "" if ready else f"needs {data} (not run here)"
        else:
            skip = HEAVY.get(name, "") if not only else ""
        work = os.path.join(args.out, name)  # relative to the repository, as the job runs there
        argv = [genimg, "train", "--config", f"configs/{stem}.py", "--workdir", work, *own]
        job = {"name": name, "skip": skip, "argv": argv + COMMON + extra, "steps": steps}
        jobs.append(job | {"workdir": os.path.join(REPO, work)})
    return jobs


def wait_idle(settle: float) -> float:
    """The 1-minute load average once it is <= IDLE, or after `settle` seconds of waiting."""
    end = time.monotonic() + settle
    while os.getloadavg()[0] > IDLE and time.monotonic() < end:
        time.sleep(5)
    return os.getloadavg()[0]


def last_grid(workdir: str, dest: str) -> str:
    """Copies the last step's grid to `dest`: its `samples`, else `prior_samples` (the VAEs'),
    else `reconstructions` (the autoencoders'); "" if none."""
    for kind in ("samples", "prior_samples", "reconstructions"):
        if grids := glob.glob(os.path.join(workdir, "samples", f"{kind}_[0-9]*.png")):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(max(grids), dest)  # zero-padded steps: the last is the greatest
            return dest
    return ""


def run_job(job: dict, settle: float) -> dict:
    """Runs one job in its own process (output to WORKDIR.log, its last grid to WORKDIR.png) and
    returns its row."""
    workdir = job["workdir"]
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    row = dict(job, load=wait_idle(settle), command=shlex.join(job["argv"]))
    print(f"[{row['name']}] load {row['load']:.2f}: {row['command']}", flush=True)
    start = time.monotonic()
    with open(workdir + ".log", "w") as log:
        done = subprocess.run(
            job["argv"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    row["wall"] = time.monotonic() - start
    commit = head_commit()
    if os.path.exists(os.path.join(workdir, "run_record.json")):
        with open(os.path.join(workdir, "run_record.json")) as f:
            commit = json.load(f).get("git_commit") or commit  # the commit genimg ran from
    row["commit"] = commit[:12] + "-dirty" * commit.endswith("-dirty")
    if done.returncode:
        row["skip"] = f"failed (exit {done.returncode}): see `{os.path.relpath(workdir, REPO)}.log`"
        return row
    with open(os.path.join(workdir, "summary.json")) as f:
        row["scores"] = json.load(f).get("eval", {})
    row["grid"] = last_grid(workdir, workdir + ".png")
    with open(workdir + ".row.json", "w") as f:
        json.dump(row, f, indent=1)
    return row


def kept_row(job: dict) -> dict | None:
    """The row a finished run of `job` left (`--resume`; its grid staged again), or None after
    removing what an unfinished one left (its workdir would resume: its wall time would not be
    a whole run's)."""
    workdir = job["workdir"]
    if os.path.exists(workdir + ".row.json"):
        with open(workdir + ".row.json") as f:
            row = json.load(f)
        if row["argv"] == job["argv"]:
            print(f"[{job['name']}] kept: {workdir}.row.json", flush=True)
            return row | {"grid": last_grid(workdir, workdir + ".png")}
    shutil.rmtree(workdir, ignore_errors=True)
    for path in (workdir + ".log", workdir + ".row.json"):
        if os.path.exists(path):
            os.remove(path)
    return None


def publish_grid(row: dict, grid_dir: str) -> dict:
    """The row with its grid copied from beside its workdir to `grid_dir`/NAME.png."""
    if not row.get("grid"):
        return row
    os.makedirs(grid_dir, exist_ok=True)
    dest = os.path.join(grid_dir, row["name"] + ".png")
    shutil.copyfile(row["grid"], dest)
    return row | {"grid": dest}


def table(title: str, rows: list[dict], columns: tuple, doc_dir: str) -> list[str]:
    heads = ["config", "steps", *(f"`{key}`" for key in columns), *TAIL]
    lines = [f"### {title}", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        minutes, seconds = divmod(round(row["wall"]), 60)
        grid = f"[png]({os.path.relpath(row['grid'], doc_dir)})" if row["grid"] else "–"
        values = [row["scores"].get(key, "–") for key in columns]
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in values]
        cells += [f"{minutes} min {seconds} s" if minutes else f"{seconds} s", f"{row['load']:.2f}"]
        cells += [f"`{row['commit']}`", grid, f"`{row['command']}`"]
        lines.append(f"| `{row['name']}` | {row['steps']} | " + " | ".join(cells) + " |")
    return lines + [""]


def render(rows: list[dict], args, extra, doc_dir: str, commit: str) -> tuple[str, str]:
    """The page's header (a quote under its title, `commit` the one the jobs started at) and its
    `## Shipped configs` section."""
    command = shlex.join([".venv/bin/python", "benchmarks/results.py", *args.argv])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with open("/proc/cpuinfo") as f:
        info = [ln.split(":", 1) for ln in f if ":" in ln]
    cpus = [v.strip() for k, v in info if k.strip() == "model name"] or ["?"]
    flags = set(next((v.split() for k, v in info if k.strip() == "flags"), []))
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    note = f" **NOT the default-steps results**: {args.steps} steps each." if args.steps else ""
    if len(commits := {r["commit"] for r in rows if "commit" in r}) > 1:
        note += f" **The rows come from {len(commits)} commits.**"
    quote = f"""> Generated by `{command}`; do not edit the `{SECTION[3:]}` tables by hand (the other `## `
> sections are hand-written, kept as they are).
> Commit `{commit}`; {cpus[0]} ({simd}), {os.cpu_count()} cores; {when}.{note}"""
    intro = "Each job ran alone, one after another; `load` is the 1-minute load average as it"
    intro += f" started, the wall time its process's. Every job took `{' '.join(COMMON + extra)}`."
    lines = [SECTION, "", intro, ""]
    ran = [r for r in rows if not r["skip"]]
    kinds = (("GANs", GAN, "fid"), ("VAEs", VAE, "neg_elbo"), ("Autoencoders", AUTOENCODER, "rfid"))
    for title, columns, key in kinds:
        if mine := [r for r in ran if key in r["scores"]]:
            lines += table(title, mine, columns, doc_dir)
    if other := [r for r in rows if r["skip"]]:
        lines += ["### Not run", "", "| config | why |", "|---|---|"]
        lines += [f"| `{r['name']}` | {r['skip']} |" for r in other] + [""]
    return quote, "\n".join(lines)


def write_doc(path: str, quote: str, section: str) -> None:
    """Rewrites the page: `quote` in place of the old quote under its title, `section` in place
    of its `## Shipped configs` (or last); the rest of the old page is kept."""
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    pre, *sections = ("\n" + old).split("\n## ")
    rest = "\n".join(ln for ln in pre.strip().splitlines()[1:] if not ln.startswith(">"))
    sections = ["## " + s.strip("\n") + "\n" for s in sections]
    names = [s.split("\n", 1)[0].strip() for s in sections]
    at = names.index(SECTION) if SECTION in names else len(sections)
    sections[at : at + 1] = [section.strip("\n") + "\n"]
    head = "\n\n".join(part for part in ("# Results", quote, rest.strip("\n")) if part) + "\n"
    with open(path, "w") as f:
        f.write("\n".join([head, *sections]))


def main(argv=None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    jobs = plan(args, extra)
    if args.dry_run:
        for job in jobs:
            print(f"# {job['name']}: {job['skip']}" if job["skip"] else shlex.join(job["argv"]))
        return 0
    there = [j["workdir"] for j in jobs if not j["skip"] and os.path.exists(j["workdir"])]
    if there and not args.resume:
        sys.exit(f"{there} exist: a run there would resume; --resume, remove them or another --out")
    if (commit := head_commit()).endswith("-dirty") and not args.allow_dirty:
        sys.exit("the tree has uncommitted changes: commit them, or pass --allow-dirty")
    if (load := os.getloadavg()[0]) > IDLE:
        print(f"warning: 1-minute load {load:.2f} > {IDLE}: the wall times will show it")
    rows = []
    for job in jobs:
        kept = None if job["skip"] or not args.resume else kept_row(job)
        rows.append(job if job["skip"] else kept or run_job(job, args.settle))
    doc_dir = os.path.dirname(os.path.abspath(args.doc))
    # the docs change only now, after the last job: each job ran from the commit's tree
    rows = [publish_grid(row, os.path.join(doc_dir, "results")) for row in rows]
    write_doc(args.doc, *render(rows, args, extra, doc_dir, commit))
    print(f"wrote {args.doc}")
    return int(any(r["skip"].startswith("failed") for r in rows))


if __name__ == "__main__":
    sys.exit(main())
