"""The documented commands run as written: every Snakemake command in the bash blocks of README.md and the
docs/*.md pages builds its DAG (as a dry run, `-n` added: the real runs are the studies themselves),
`archscale plan --gpus` runs as shown, and every `--config key=value` they show is one Snakemake accepts (it
takes no dotted keys). The README stays a front page (at most 200 lines, opening with `make run` and
`make test`) from which every docs/ page is linked."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _text():
    """README.md first, then every docs/*.md page, concatenated."""
    return "\n\n".join(p.read_text() for p in [README, *DOCS])


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _commands():
    out = []
    for block in _bash_blocks(_text()):
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split(" #")[0].strip()
            if cmd and not cmd.startswith("#") and cmd not in out:
                out.append(cmd)
    return out


SNAKEMAKE = [c for c in _commands() if re.match(r"(\.venv/bin/)?snakemake\b", c)]


def test_the_docs_show_snakemake_commands():
    assert len(SNAKEMAKE) >= 4


@pytest.mark.parametrize("cmd", SNAKEMAKE)
def test_each_documented_snakemake_command_builds_its_dag(cmd, tmp_path):
    args = shlex.split(cmd)
    args[0] = str(BIN / "snakemake")
    if "my_study.yaml" in cmd:  # written by the documented `archscale plan` line just before it
        (tmp_path / "my_study.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
        args = [a if a != "my_study.yaml" else str(tmp_path / "my_study.yaml") for a in args]
    proc = subprocess.run(args + ["-n", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"


def test_inline_config_overrides_in_the_docs_are_ones_snakemake_takes():
    text = _text()
    values = re.findall(r"--config ([^`\n]+)", text)
    assert values
    for value in values:
        item = shlex.split(value)[0]
        key = item.split("=", 1)[0]
        assert "." not in key or "no dotted keys" in value or "takes no dotted" in text[text.find(value) - 200:
                                                                                       text.find(value) + 200], \
            f"--config {item}: Snakemake takes no dotted keys"


def test_the_gpu_plan_command_runs_as_shown(tmp_path):
    cmd = re.search(r"`(archscale plan --gpus [^`]+)`", _text()).group(1)
    args = shlex.split(cmd)
    args = [str(BIN / "archscale")] + [str(tmp_path / a) if a.endswith(".yaml") else a for a in args[1:]]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GPU-hours of 24" in proc.stdout


def test_the_readme_is_a_front_page_that_opens_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 200, f"README.md has {len(text.splitlines())} lines (at most 200)"
    first = _bash_blocks(text)[0]
    assert "make run" in first and "make test" in first, first


def test_every_docs_page_is_linked_from_the_readme_and_every_docs_link_resolves():
    text = README.read_text()
    assert DOCS
    targets = {t.split("#")[0] for t in re.findall(r"\]\((docs/[^)\s]+)\)", text)}
    for page in DOCS:
        assert f"docs/{page.name}" in targets, f"docs/{page.name} is not linked from README.md"
    assert "docs/report-first-page.png" in targets
    for target in targets:
        assert (ROOT / target).is_file(), f"README.md links {target}, which does not exist"
