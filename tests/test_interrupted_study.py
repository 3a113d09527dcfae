"""Killing Snakemake mid-study and rerunning the same command finishes the study without
retraining completed runs; the interrupted run resumes from its checkpoint. A corrupt
input then stops a job with one line on the console and deletes no earlier result."""
import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from snakemake_helpers import SNAKEMAKE, snakemake

pytestmark = pytest.mark.e2e


def _interrupt_mid_study(root, work):
    """Start the study in `work` and send Ctrl-C while a stable run is mid-way. Returns whether the
    signal went out and the finished runs' run.json mtimes."""
    cmd = [SNAKEMAKE, "--snakefile", str(root / "Snakefile"), "--directory", str(work), "--cores", "2",
           "--configfile", str(work / "config.yaml"), "--rerun-incomplete"]
    runs = work / "results" / "runs" / "gpt2"
    log = work / "snakemake.out"
    with open(log, "w") as out:
        # SIGINT back to its default in the child: a test run started in the background of a non-interactive
        # shell inherits it ignored (POSIX), and Snakemake would then never see the Ctrl-C
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline, killed = time.time() + 600, False
    while time.time() < deadline and proc.poll() is None:
        trained = log.read_text().count("(Rule: stable)")
        # a stable run with a checkpoint and no run.json yet is mid-way (finished ones keep their branch checkpoints)
        in_progress = [p for p in runs.glob("*/*/stable/checkpoints/step-*.json") if not (p.parents[1] / "run.json").exists()]
        if trained and in_progress:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=120)
    # finished: run.json written and the job complete to Snakemake (a job the signal caught between writing run.json
    # and exiting is marked incomplete, and rightly reruns)
    incomplete = _incomplete_outputs(work)
    return killed, {p.parent: p.stat().st_mtime_ns for p in runs.glob("*/*/*/run.json")
                    if str(p.relative_to(work)) not in incomplete}


def _incomplete_outputs(work) -> set:
    """The output paths Snakemake marked incomplete (.snakemake/incomplete/<urlsafe base64 of the path>)."""
    from base64 import urlsafe_b64decode

    root = work / ".snakemake" / "incomplete"
    out = set()
    for marker in (root.rglob("*") if root.is_dir() else []):
        if marker.is_file() and marker.name != "migration_underway":
            b64 = "".join(part.lstrip("@") for part in marker.relative_to(root).parts)
            try:
                out.add(urlsafe_b64decode(b64).decode())
            except ValueError:
                continue
    return out


def test_kill_snakemake_mid_study_then_rerun(root, tmp_path):
    cfg = yaml.safe_load((root / "tests" / "smoke" / "config.yaml").read_text())
    cfg["variants"] = {"gpt2": {"sizes": ["xs", "m", "l"]}}
    cfg["seeds"] = [0]
    cfg["budgets"] = {"kind": "tokens"}  # one budget: a stable run and one cooldown per size
    cfg["training"].update(tokens=49152, checkpoint_every=10)
    # On a loaded machine the signal can arrive after the last job ended (the runs take seconds): that
    # try says nothing about interruption, so it is repeated in a fresh folder (at most three tries).
    for attempt in range(3):
        work = tmp_path / f"try{attempt}"
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        killed, finished = _interrupt_mid_study(root, work)
        if not (work / "results" / "report" / "report.pdf").exists():
            break
    tmp_path = work
    runs = tmp_path / "results" / "runs" / "gpt2"
    assert killed, "the study finished before it could be interrupted"
    assert finished and not (tmp_path / "results" / "report" / "report.pdf").exists()

    snakemake(root, tmp_path, "--rerun-incomplete")
    for run_dir, mtime in finished.items():
        assert (run_dir / "run.json").stat().st_mtime_ns == mtime, f"{run_dir} was retrained"
    infos = [json.loads(p.read_text()) for p in runs.glob("*/*/*/run.json")]
    assert len(infos) == 6 and all(i["status"] == "ok" for i in infos)  # 3 stable runs, 3 cooldowns
    assert any(i["resumed"] for i in infos), "the interrupted run did not resume from its checkpoint"
    assert (tmp_path / "results" / "report" / "report.pdf").is_file()

    # a corrupt token file: one line naming the problem, earlier results kept
    tokens = tmp_path / "results" / "data" / "tokens" / "shards" / "val_000000.bin"
    tokens.write_bytes(tokens.read_bytes()[:-64])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "results" / "runs").rglob("*.csv"))
    out = snakemake(root, tmp_path, "--forcerun", "stable", "--until", "stable", "-j", "1", "--keep-going", check=False)
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("archscale error")]
    assert out.returncode != 0 and lines, out.stderr[-3000:]
    assert "val_000000.bin" in lines[0] and "rerun the tokens rule" in lines[0]
    # Snakemake removes the outputs of the failed jobs it was asked to redo, nothing else
    assert (tmp_path / "results" / "data" / "tokens" / "shards" / "train_000000.bin").stat().st_size > 0
    assert (tmp_path / "results" / "data" / "tokens" / "meta.json").is_file()
    assert (tmp_path / "results" / "report" / "report.pdf").is_file()
    assert before
