"""The command line: ``assignflow demo`` and ``assignflow plugins`` on tiny inputs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from assignflow.cli import main, run_demo


def test_run_demo_small(tmp_path):
    out = tmp_path / "demo.png"
    res = run_demo(size=24, n_train=3, n_test=2, max_iter=4, output=str(out), verbose=False)
    r = res["results"]
    assert set(r) == {
        "pixelwise rounding",
        "LAF, uniform weights",
        "assignment flow, uniform weights",
        "LAF, learned weights",
    }
    # the LAF must beat pixelwise rounding on noisy scenes
    assert r["LAF, uniform weights"]["error"] < r["pixelwise rounding"]["error"]
    assert r["LAF, learned weights"]["error"] < r["pixelwise rounding"]["error"]
    assert all(len(v["labels"]) == 2 for v in r.values())
    assert out.exists() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_command_prints_table(tmp_path, capsys):
    code = main(
        [
            "demo",
            "--size",
            "20",
            "--n-train",
            "2",
            "--n-test",
            "1",
            "--max-iter",
            "2",
            "--no-figure",
            "--scenario",
            "colors",
            "--noise",
            "0.3",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "pixelwise rounding" in text and "learned weights" in text and "%" in text


def test_plugins_command_lists_builtins(capsys):
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    for name in ("grid", "exponential_krylov", "euler", "geometric_euler"):
        assert name in text
    assert "[assignflow]" in text


def test_bad_arguments_give_clear_errors(capsys):
    assert main(["demo", "--size", "0", "--no-figure"]) == 2
    assert main(["demo", "--noise", "-1", "--no-figure"]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--scenario", "stripes"])
    assert main([]) == 2


def test_module_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "assignflow", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0 and "assignflow" in proc.stdout
