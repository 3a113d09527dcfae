"""The README's documented commands run as written: every Snakemake command in its bash blocks builds its DAG
(as a dry run, `-n` added: the real runs are the studies themselves), `archscale plan --gpus` runs as shown, and
every `--config key=value` the README shows is one Snakemake accepts (it takes no dotted keys)."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    out = []
    for block in blocks:
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split(" #")[0].strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
    return out


SNAKEMAKE = [c for c in _commands() if re.match(r"(\.venv/bin/)?snakemake\b", c)]


def test_the_readme_shows_snakemake_commands():
    assert len(SNAKEMAKE) >= 4


@pytest.mark.parametrize("cmd", SNAKEMAKE)
def test_each_documented_snakemake_command_builds_its_dag(cmd, tmp_path):
    args = shlex.split(cmd)
    args[0] = str(BIN / "snakemake")
    if "my_study.yaml" in cmd:  # written by the README's `archscale plan` line just before it
        (tmp_path / "my_study.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
        args = [a if a != "my_study.yaml" else str(tmp_path / "my_study.yaml") for a in args]
    proc = subprocess.run(args + ["-n", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"


def test_inline_config_overrides_in_the_readme_are_ones_snakemake_takes():
    text = (ROOT / "README.md").read_text()
    values = re.findall(r"--config ([^`\n]+)", text)
    assert values
    for value in values:
        item = shlex.split(value)[0]
        key = item.split("=", 1)[0]
        assert "." not in key or "no dotted keys" in value or "takes no dotted" in text[text.find(value) - 200:
                                                                                       text.find(value) + 200], \
            f"--config {item}: Snakemake takes no dotted keys"


def test_the_gpu_plan_command_runs_as_shown(tmp_path):
    text = (ROOT / "README.md").read_text()
    cmd = re.search(r"`(archscale plan --gpus [^`]+)`", text).group(1)
    args = shlex.split(cmd)
    args = [str(BIN / "archscale")] + [str(tmp_path / a) if a.endswith(".yaml") else a for a in args[1:]]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GPU-hours of 24" in proc.stdout
