"""Issue 13, items 4, 5 and 7: ``python -m analysis`` checks --out before any work, replaces it as a
whole (all or nothing, nothing stale, fsync'd), keeps names from the table inside --out, and says
on the console what it could not use or fit."""
import errno
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis_testlib import ROOT, make_run  # first: puts the repo root on sys.path
import analysis.__main__ as cli
from analysis import io
from analysis.io import LEGACY_TABLES, MARKER, safe_name, safe_names
from analysis.synthetic import synthetic_curves, synthetic_study


def _study(n_variants=2):
    return synthetic_study(np.random.default_rng(3), n_variants=n_variants)


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "in" / "curves.csv"
    path.parent.mkdir()
    _study().to_csv(path, index=False)
    return path


def run(csv, out, *extra):
    return cli.main([str(csv), "--out", str(out), "--n-boot", "5", *extra])


def _one_error_line(capsys, *parts):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for p in parts:
        assert p in err, err
    return err


@pytest.fixture
def no_analysis(monkeypatch):
    """Fail loudly if the analysis starts: the checks must come before any work."""
    def boom(*a, **k):
        raise AssertionError("the analysis ran before the output folder was checked")
    monkeypatch.setattr(cli, "analyse", boom)
    monkeypatch.setattr(cli, "read_curves", boom)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- item 4: --out checked before any work
def test_out_that_is_a_file(tmp_path, csv, capsys, no_analysis):
    (tmp_path / "f").write_text("mine")
    assert run(csv, tmp_path / "f") == 2
    _one_error_line(capsys, "is a file; give a folder")
    assert (tmp_path / "f").read_text() == "mine"


def test_out_under_a_file(tmp_path, csv, capsys, no_analysis):
    (tmp_path / "f").write_text("mine")
    assert run(csv, tmp_path / "f" / "sub" / "out") == 2
    _one_error_line(capsys, f"lies under the file {tmp_path / 'f'}")


def test_out_in_a_folder_that_cannot_be_written(tmp_path, csv, capsys, no_analysis, monkeypatch):
    """A read-only parent, simulated (the tests may run as root, who may write anywhere)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = io.tempfile.mkdtemp

    def mkdtemp(*a, dir=None, **k):
        if dir is not None and os.path.realpath(dir) == os.path.realpath(ro):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real(*a, dir=dir, **k)
    monkeypatch.setattr(io.tempfile, "mkdtemp", mkdtemp)
    assert run(csv, ro / "a" / "out") == 2
    _one_error_line(capsys, f"cannot write in {ro} (Permission denied)", "give a folder you can write to")
    assert list(ro.iterdir()) == []


def test_foreign_files_in_out_are_never_lost(tmp_path, csv, capsys, no_analysis):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert run(csv, out) == 2
    _one_error_line(capsys, "holds 'notes.txt', which no earlier analysis wrote")
    assert (out / "notes.txt").read_text() == "my notes"


def test_the_input_inside_out_is_refused(tmp_path, capsys, no_analysis):
    out = tmp_path / "out"
    out.mkdir()
    _study().to_csv(out / "curves.csv", index=False)
    assert run(out / "curves.csv", out) == 2
    _one_error_line(capsys, "contains the input")
    assert (out / "curves.csv").is_file()


# ---------------------------------------------------------------- item 4: all or nothing, nothing stale
def test_rerun_replaces_out_and_leaves_nothing_stale(tmp_path, capsys):
    three = _study(3)
    three.to_csv(tmp_path / "three.csv", index=False)
    three[three["variant"] != "v2"].to_csv(tmp_path / "two.csv", index=False)
    out = tmp_path / "out"
    assert run(tmp_path / "three.csv", out) == 0
    assert (out / "figures" / "curves_v2.png").is_file()
    first = _snapshot(out)
    assert run(tmp_path / "two.csv", out) == 0
    after = _snapshot(out)
    assert "figures/curves_v2.png" not in after  # stale figure gone
    assert "v2" not in pd.read_csv(out / "fits.csv")["variant"].tolist()
    assert set(after) <= set(first) and "fits.csv" in after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "three.csv", "two.csv"]  # no temp folders left
    assert MARKER in after and "fits.csv" in after[MARKER].decode().split("\n")


def test_a_full_disk_changes_nothing_in_out(tmp_path, csv, capsys, monkeypatch):
    out = tmp_path / "out"
    assert run(csv, out, "--no-figures") == 0
    before = _snapshot(out)
    capsys.readouterr()
    real = pd.DataFrame.to_csv
    calls = []

    def to_csv(self, path, *a, **k):
        calls.append(path)
        if len(calls) == 5:  # the disk fills after four tables
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(self, path, *a, **k)
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    assert run(csv, out, "--seed", "7") == 2
    _one_error_line(capsys, "No space left on device", "nothing in --out", "was changed")
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # the half-written folder is gone


def test_writes_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    io.write_tables({"t": pd.DataFrame({"a": [1.0]})}, tmp_path / "d")
    assert len(synced) == 2  # the file, then its folder
    if isinstance(synced[0], str):
        assert synced[0].startswith(str(tmp_path / "d" / ".t.csv.")) and synced[1] == str(tmp_path / "d")


# ---------------------------------------------------------------- item 5: names from the table in paths
def test_a_variant_name_cannot_escape_out(tmp_path):
    df = synthetic_curves(np.random.default_rng(0), variant="x/../../../escaped/pwned", n_points=6)
    (tmp_path / "work" / "a" / "b").mkdir(parents=True)
    df.to_csv(tmp_path / "work" / "curves.csv", index=False)
    out = tmp_path / "work" / "a" / "b" / "out"
    r = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path / "work" / "curves.csv"), "--out", str(out),
                        "--n-boot", "5"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents
               and p != tmp_path / "work" / "curves.csv"]
    assert outside == []
    assert (out / "figures" / f"{safe_name('curves_x/../../../escaped/pwned')}.png").is_file()


NASTY = ["gpt2", "x/../../y", "x%2F..%2F..%2Fy", ".", "..", ".hidden", "a b", "a\\b", "a\x00b", "ü", "Ü",
         "con", "-rf", "a" * 300, "a" * 299 + "b", "~", "%", "%25"]


def test_safe_name_keeps_names_inside_one_folder_and_distinct():
    names = [safe_name(n) for n in NASTY]
    assert len(set(names)) == len(NASTY)
    for n in names:
        assert "/" not in n and "\\" not in n and "\x00" not in n and not n.startswith(".")
        assert n not in (".", "..") and 0 < len(n.encode()) <= 200
    assert safe_name("gpt2") == "gpt2" and safe_name("bert_mlm") == "bert_mlm" and safe_name("s-1.5") == "s-1.5"
    with pytest.raises(ValueError, match="empty name"):
        safe_name("")


def test_safe_names_are_distinct_on_case_insensitive_file_systems():
    names = safe_names(["GPT2", "gpt2", "bert"])
    assert len({v.casefold() for v in names.values()}) == 3
    assert names["bert"] == "bert"


# ---------------------------------------------------------------- item 7: say what was refused
def _console(tmp_path, df, capsys):
    df.to_csv(tmp_path / "c.csv", index=False)
    assert cli.main([str(tmp_path / "c.csv"), "--out", str(tmp_path / "out"), "--n-boot", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


def test_single_run_says_what_was_refused(tmp_path, capsys):
    lines = _console(tmp_path, make_run("solo", "s", 1e6, [1e6, 2e6, 4e6, 8e6], [3.0, 2.8, 2.7, 2.65]), capsys)
    assert any(line.startswith("refused: solo L(C) fits pure, eterm: 1 usable run(s) of 1 size(s); need >= 3 sizes") for line in lines), lines
    assert any(line.startswith("failed: solo L(C) fits approach3: Approach 3 needs >= 6 points") for line in lines), lines
    assert any(line.startswith("refused: solo L(N) fits with N = total, nonembedding") for line in lines), lines
    assert lines[-1].startswith("wrote ")


def test_one_size_says_what_was_refused(tmp_path, capsys):
    df = synthetic_curves(np.random.default_rng(0), sizes=(("m", 6.0e6),), seeds=(0, 1, 2), n_points=8)
    lines = _console(tmp_path, df, capsys)
    assert any(line.startswith("refused: base L(N) fits") and "1 distinct size(s)" in line for line in lines), lines


def test_all_diverged_says_so(tmp_path, capsys):
    lines = _console(tmp_path, _study().assign(status="diverged"), capsys)
    assert lines[0].startswith("not used: 8 of 8 run(s): diverged (v0/")
    assert "refused: no run is usable, so nothing was fitted or compared" in lines
    assert lines[-1].startswith("wrote ")


def test_an_output_folder_of_an_older_version_is_replaced_but_other_csvs_are_kept(tmp_path, csv, capsys):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "fits.csv").write_text("old")
    (out / "figures" / "curves_gone.png").write_bytes(b"old")
    assert run(csv, out, "--no-figures") == 0
    assert (out / "fits.csv").read_text() != "old" and not (out / "figures").exists()
    for table in out.glob("*.csv"):  # as an older version would have left it: its 13 tables, no marker ...
        if table.stem not in LEGACY_TABLES:
            table.unlink()
    (out / MARKER).unlink()  # ... plus a table of the user's own
    (out / "my_ladder.csv").write_text("mine")
    capsys.readouterr()
    assert run(csv, out, "--no-figures") == 2
    _one_error_line(capsys, "holds 'my_ladder.csv', which no earlier analysis wrote")
    assert (out / "my_ladder.csv").read_text() == "mine"


def test_n_boot_below_the_minimum_is_refused_and_zero_is_labelled_ols(csv, tmp_path, capsys):
    """--n-boot 1 printed a zero-width "95% bootstrap interval", --n-boot 0 an OLS interval under that label."""
    from analysis.options import AnalysisOptions

    with pytest.raises(ValueError, match="n_boot"):
        AnalysisOptions(n_boot=1)
    assert cli.main([str(csv), "--out", str(tmp_path / "o0"), "--n-boot", "0", "--no-figures"]) == 0
    assert "95% OLS (no bootstrap: --n-boot 0) interval" in capsys.readouterr().out
    assert cli.main([str(csv), "--out", str(tmp_path / "o5"), "--n-boot", "5", "--no-figures"]) == 0
    assert "95% bootstrap (5 resamples: rough) interval" in capsys.readouterr().out


def test_an_out_that_links_to_an_earlier_result_is_replaced_through_the_link(csv, tmp_path):
    assert run(csv, tmp_path / "first", "--no-figures") == 0
    (tmp_path / "latest").symlink_to(tmp_path / "first")
    assert run(csv, tmp_path / "latest", "--no-figures") == 0
    assert (tmp_path / "latest").is_symlink() and (tmp_path / "first" / "fits.csv").is_file()
    assert not list(tmp_path.glob(".first.old-*")) and not list(tmp_path.glob(".latest.*"))


def test_what_a_killed_write_left_behind_is_removed_by_the_next_one(csv, tmp_path):
    (tmp_path / ".out.new-abc123").mkdir()
    (tmp_path / ".out.new-abc123" / "fits.csv").write_text("half\n")
    (tmp_path / ".out.old-def456").mkdir()
    assert run(csv, tmp_path / "out", "--no-figures") == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
