"""The smoke study through a real single-node SLURM cluster with workflow/profiles/slurm.

tests/slurm/cluster.sh installs SLURM from the Debian packages where it is missing, starts a
one-node cluster on this machine (fake GPUs, no accounting) and stops it again. The study runs
with `training.gpus: 1`, so every training job asks SLURM for a GPU; with no CUDA visible it still
trains on CPU, so its numbers must equal those of a local run of the same config (same seeds).
The local run is the suite's shared one where tests/conftest.py provides a session fixture
`smoke_study` (the working folder of a finished local smoke run); otherwise this module runs one
(to the learning-curve table, with workflow/profiles/default) in the background, started first, while
the cluster is installed and the SLURM run goes.

Skips, with the reason: the machine already runs SLURM (never touched then), another copy of this
test holds the cluster, or the machine cannot host one (not root; packages missing and no apt-get).
On CI (CI=true) the last one is a failure instead: CI is a root Debian machine and must run it.
ARCHSCALE_SLURM_TEST=skip skips the module; =require makes that last skip a failure anywhere.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slurm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLUSTER = HERE / "cluster.sh"
CLUSTER_DIR = Path(os.environ.get("ARCHSCALE_SLURM_DIR", "/tmp/archscale-slurm"))
LOCK = Path("/tmp/archscale-slurm.lock")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
MODE = os.environ.get("ARCHSCALE_SLURM_TEST", "auto")  # auto | skip | require
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# time limits (seconds); the whole module takes 7-9 minutes on a 2-core machine (the SLURM run and the
# local run of the smoke study share its cores)
CHECK_TIMEOUT = 60
START_TIMEOUT = 600  # includes apt-get update + install on a fresh machine
STOP_TIMEOUT = 120
LOCAL_TIMEOUT = 1200  # from its start, in the background
SLURM_TIMEOUT = 1200

# The SLURM run: the profile, plus what this cluster needs. It has no accounting database, so the
# plugin's default `sacct` status check cannot work: ask squeue (the cluster keeps finished jobs
# for MinJobAge=3600 s). The first status check comes after 2 s instead of 40 (short jobs here).
# No retries: a failure should fail the test at once. (It has no accounts either: the plugin's
# "Unable to guess SLURM account. Trying to proceed without." is expected.)
SLURM_ARGS = ["--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"),
              "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
              "--retries", "0"]
LOCAL_ARGS = ["--workflow-profile", str(ROOT / "workflow" / "profiles" / "default"), "--cores", "2"]


def clean_env():
    """This environment without SLURM's own variables (the test may itself run inside a job)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}


def snakemake_cmd(work, *args):
    return [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), *args]


def tail(path, lines=40):
    path = Path(path)
    if not path.is_file():
        return f"--- {path}: absent\n"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- tail of {path}\n" + "\n".join(text) + "\n"


def run_quiet(cmd, timeout, **kw):
    """A short helper command: its output, or why there is none (never raises)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean_env(), **kw)
        return p.stdout + p.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({' '.join(map(str, cmd))}: {e})"


def kill_group(proc, grace=20):
    """Stop a process started with start_new_session=True and everything it started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Background:
    """A command running in the background with its output in a log file."""

    def __init__(self, cmd, log):
        self.cmd, self.log, self.t0, self.started = cmd, Path(log), time.monotonic(), time.time()
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=clean_env(),
                                     start_new_session=True)
        self.seconds = None

    def wait(self, timeout):
        """The exit status, or None where it ran past `timeout` (then it is killed)."""
        try:
            rc = self.proc.wait(timeout=max(1.0, timeout - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            rc = None
        self._out.close()
        # when it ended: its log's last write (it may have ended long before this wait)
        self.seconds = round(min(time.monotonic() - self.t0, self.log.stat().st_mtime - self.started), 1)
        return rc

    def stop(self):
        if self.proc.poll() is None:
            kill_group(self.proc)
        if not self._out.closed:
            self._out.close()


def failed_job_logs(work, output, most=4):
    """The logs Snakemake names for its failed jobs (rule log, SLURM job log), the job's own part of each."""
    paths = []
    for names in re.findall(r"^\s+log: (.+?) \(check log file", output, flags=re.M):
        for name in names.split(", "):
            path = Path(name) if Path(name).is_absolute() else Path(work) / name
            if path not in paths:
                paths.append(path)
    text = ""
    for path in paths[:most]:
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        # a SLURM job log repeats Snakemake's preamble twice; what the job printed follows the last of it
        starts = [i for i, line in enumerate(lines) if line.startswith("Shell command:")]
        lines = lines[starts[-1] + 1:] if starts else lines
        text += f"--- {path} (end)\n" + "\n".join(lines[-40:]) + "\n"
    return text


def cluster_diagnostics(work=None, output=""):
    """Everything useful when the SLURM run goes wrong: failed jobs' logs, daemons' logs, the queue."""
    text = failed_job_logs(work, output) if work is not None else ""
    text += "".join(tail(CLUSTER_DIR / "log" / f"{d}.log", 25) for d in ("slurmctld", "slurmd"))
    text += "--- sinfo / squeue\n" + run_quiet(["sinfo"], 10) + run_quiet(["squeue", "--states=all"], 10)
    return text


# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def machine():
    """May this machine get a test cluster? Holds a lock so two copies of the test never share one."""
    if MODE == "skip":
        pytest.skip("ARCHSCALE_SLURM_TEST=skip")
    if not CLUSTER.is_file() or shutil.which("bash") is None:
        pytest.skip("no bash to run tests/slurm/cluster.sh")
    # read-only is enough for flock, and works on a lock file another user created
    lock = os.fdopen(os.open(LOCK, os.O_RDONLY | os.O_CREAT, 0o644))
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        pytest.skip(f"another archscale SLURM test holds {LOCK} (its cluster is in use)")
    try:
        p = subprocess.run(["bash", str(CLUSTER), "check"], capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                           env=clean_env())
    except subprocess.TimeoutExpired:
        lock.close()
        pytest.fail(f"'cluster.sh check' took longer than {CHECK_TIMEOUT} s")
    reason = " ".join(line[5:].strip() for line in p.stdout.splitlines() if line.startswith("SKIP:"))
    if p.returncode == 3:  # the machine already runs SLURM: never touch it
        lock.close()
        pytest.skip(reason)
    if p.returncode == 4:  # cannot host a cluster: not root, or no packages and no apt-get
        lock.close()
        if MODE == "require" or (ON_CI and MODE != "skip"):
            pytest.fail(f"the SLURM test must run here (CI={os.environ.get('CI')!r}, "
                        f"ARCHSCALE_SLURM_TEST={MODE}) but: {reason}")
        pytest.skip(reason)
    if p.returncode != 0:
        lock.close()
        pytest.fail(f"'cluster.sh check' failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    yield
    lock.close()


class Finished:
    """A local run of the smoke study that is already there."""

    def __init__(self, work):
        self.work, self.seconds, self.cmd, self.log = Path(work), 0.0, ["(shared smoke_study fixture)"], None

    def wait(self, timeout):
        return 0


@pytest.fixture(scope="module")
def local_run(request, machine, tmp_path_factory):
    """A local run of the smoke study, for its learning-curve table. Where the suite shares one
    (a session fixture `smoke_study` in tests/conftest.py giving the run's working folder) that one;
    otherwise the training and the table are run here, in the background."""
    try:
        shared = request.getfixturevalue("smoke_study")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None:
        yield Finished(shared)
        return
    work = tmp_path_factory.mktemp("local")
    shutil.copy(ROOT / "tests" / "smoke" / "config.yaml", work / "config.yaml")
    # the target first: --configfile takes every word after it
    cmd = snakemake_cmd(work, "results/analysis/curves.csv", *LOCAL_ARGS, "--configfile", str(work / "config.yaml"))
    run = Background(cmd, work / "snakemake.log")
    run.work = work
    yield run
    run.stop()


@pytest.fixture(scope="module")
def cluster(machine, local_run):
    """A running single-node cluster (installed first where needed); stopped afterwards."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=START_TIMEOUT,
                           env=clean_env())
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = None, f"{e.stdout or ''}{e.stderr or ''}\n(timed out after {START_TIMEOUT} s)"
    try:
        if rc != 0:
            pytest.fail(f"could not start the test cluster ({rc}):\n{out}\n{cluster_diagnostics()}")
        yield SimpleNamespace(start_seconds=round(time.monotonic() - t0, 1), start_output=out)
    finally:
        # stop what it started: cancel the jobs, stop the daemons, remove /etc/slurm/slurm.conf
        out = run_quiet(["bash", str(CLUSTER), "stop"], STOP_TIMEOUT)
        if "cluster.sh: stopped" not in out:
            print(f"cluster.sh stop did not finish:\n{out}", file=sys.stderr)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The whole smoke study (to the PDF report) through `--executor slurm`, training jobs asking for a GPU."""
    work = tmp_path_factory.mktemp("slurm")
    shutil.copy(ROOT / "tests" / "smoke" / "config.yaml", work / "config.yaml")
    (work / "gpu.yaml").write_text(yaml.safe_dump({"training": {"gpus": 1}}))
    cmd = snakemake_cmd(work, *SLURM_ARGS, "--configfile", str(work / "config.yaml"), str(work / "gpu.yaml"))
    run = Background(cmd, work / "snakemake.log")
    rc = run.wait(SLURM_TIMEOUT)
    output = run.log.read_text(errors="replace")
    if rc != 0:
        diagnostics = cluster_diagnostics(work, output)
        if rc is None:  # killed: release Snakemake's lock on the folder
            run_quiet(snakemake_cmd(work, "--unlock", "--cores", "1", "--configfile", str(work / "config.yaml")), 120)
        pytest.fail(f"the SLURM run {'timed out' if rc is None else f'failed ({rc})'} after {run.seconds} s\n"
                    f"command: {' '.join(cmd)}\n--- snakemake output (end)\n{output[-5000:]}\n{diagnostics}")
    # What SLURM recorded about each training job, read now: it forgets finished jobs after MinJobAge.
    infos = {p.parent.relative_to(work / "results" / "runs").as_posix(): json.loads(p.read_text())
             for p in sorted((work / "results" / "runs").glob("**/run.json"))}
    jobs = {run_id: run_quiet(["scontrol", "show", "job", "-o", str(info["slurm_job_id"])], 10)
            for run_id, info in infos.items() if info.get("slurm_job_id")}
    print(f"\nSLURM test: cluster up in {cluster.start_seconds} s, SLURM run {run.seconds} s", file=sys.stderr)
    return SimpleNamespace(work=work, output=output, infos=infos, jobs=jobs, cmd=cmd,
                           diagnostics=lambda: f"--- snakemake output (end)\n{output[-4000:]}\n{cluster_diagnostics(work)}")


# --------------------------------------------------------------------------------------------
def test_every_training_run_was_a_slurm_job_with_a_gpu(slurm_run):
    # as many runs as Snakemake planned training jobs: the wsd study's stable runs and cooldowns
    # ("Job stats:" table at the start of its output)
    planned = {rule: re.search(rf"^{rule}\s+(\d+)\s*$", slurm_run.output, flags=re.M) for rule in ("stable", "cooldown")}
    assert all(planned.values()), f"no stable/cooldown jobs in Snakemake's job stats\n{slurm_run.diagnostics()}"
    n_jobs = sum(int(m.group(1)) for m in planned.values())
    infos = slurm_run.infos
    assert len(infos) == n_jobs > 0, f"{len(infos)} run.json files for {n_jobs} training jobs\n{slurm_run.diagnostics()}"
    no_job = [run_id for run_id, info in infos.items() if not info.get("slurm_job_id")]
    assert not no_job, f"runs not trained inside a SLURM job: {no_job}\n{slurm_run.diagnostics()}"
    ids = [info["slurm_job_id"] for info in infos.values()]
    assert len(set(ids)) == len(ids), f"runs share SLURM jobs: {ids}"
    for run_id, info in infos.items():
        assert info["status"] == "ok", (run_id, info["status"])
        assert info["device_type"] == "cpu", (run_id, info["device"])  # no CUDA behind the fake GPU
        job = slurm_run.jobs[run_id]
        assert "JobState=COMPLETED" in job, f"{run_id}: {job}\n{slurm_run.diagnostics()}"
        assert re.search(r"Tres\w*=\S*gres[:/]gpu[:=]1\b", job), f"{run_id}: the job did not ask for a GPU:\n{job}"


def test_report_was_built(slurm_run):
    pdf = slurm_run.work / "results" / "report" / "report.pdf"
    assert pdf.is_file() and pdf.stat().st_size > 10_000, f"no report at {pdf}\n{slurm_run.diagnostics()}"
    from pypdf import PdfReader

    assert len(PdfReader(pdf).pages) >= 5


def test_curves_equal_the_local_run(slurm_run, local_run):
    rc = local_run.wait(LOCAL_TIMEOUT)
    assert rc == 0, (f"the local run {'timed out' if rc is None else f'failed ({rc})'}:\n"
                     f"{' '.join(local_run.cmd)}\n{tail(local_run.log, 60) if local_run.log else ''}")
    print(f"\nSLURM test: local run {local_run.seconds} s", file=sys.stderr)
    key = ["run", "step"]
    local = pd.read_csv(local_run.work / "results" / "analysis" / "curves.csv").sort_values(key, ignore_index=True)
    slurm = pd.read_csv(slurm_run.work / "results" / "analysis" / "curves.csv").sort_values(key, ignore_index=True)
    assert list(local.columns) == list(slurm.columns)
    assert local[key].equals(slurm[key]), "the two runs evaluated at different points"
    from training.loop import TIMING_COLUMNS  # what measures the machine: elapsed_s, tokens_per_s, mfu

    numeric = [c for c in local.select_dtypes("number").columns if c not in TIMING_COLUMNS]
    assert {"loss", "train_loss", "flops", "tokens", "params_total"} <= set(numeric)
    text = [c for c in local.columns if c not in numeric and c not in TIMING_COLUMNS]
    pd.testing.assert_frame_equal(local[text], slurm[text])
    # same seeds, same code, both fp32 on CPU with the same thread count: the same numbers, exactly
    diff = (local[numeric] - slurm[numeric]).abs().max()
    assert local[numeric].equals(slurm[numeric]), f"largest differences per column:\n{diff[diff > 0]}"
