"""The demo experiment (``assignflow.demo.run_demo``) on tiny scenes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import assignflow as af
from assignflow import cli, demo
from assignflow.demo import DEMO_MAX_PIXELS, format_results, run_demo

METHODS = {
    "pixelwise rounding",
    "LAF, uniform weights",
    "assignment flow, uniform weights",
    "LAF, learned weights",
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo.png"
    return run_demo(
        scenario="colors", size=16, n_train=3, n_test=2, max_iter=3, output=out, verbose=False
    ), out


def test_run_demo_labels_four_ways(result):
    res, out = result
    r = res["results"]
    assert set(r) == METHODS
    for v in r.values():
        assert len(v["labels"]) == 2 and v["labels"][0].shape == (16, 16)
        assert 0 <= v["error"] <= 1 and v["seconds"] >= 0
    # the flows must beat pixelwise rounding on noisy scenes (noise 0.5: ~40 % wrong)
    for name in METHODS - {"pixelwise rounding"}:
        assert r[name]["error"] < 0.5 * r["pixelwise rounding"]["error"], name
    assert res["figure"] == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000


def test_defaults_are_the_estimators(result):
    model = result[0]["model"]
    params = inspect.signature(af.ImageLabeler).parameters
    assert model.rho == params["rho"].default and model.T == params["T"].default


def test_seeded_runs_repeat():
    kw = dict(size=10, n_train=2, n_test=1, max_iter=1, output=None, verbose=False)
    a = run_demo(random_state=3, **kw)["results"]
    b = run_demo(random_state=3, **kw)["results"]
    for name in METHODS:
        np.testing.assert_array_equal(a[name]["labels"][0], b[name]["labels"][0])


def test_verbose_prints_the_table(capsys):
    run_demo(size=10, n_train=2, n_test=1, max_iter=1, output=None, verbose=True)
    out = capsys.readouterr().out
    assert "fitting" in out and "pixelwise rounding" in out and "%" in out
    run_demo(size=10, n_train=2, n_test=1, max_iter=1, output=None, verbose=False)
    assert capsys.readouterr().out == ""


def test_format_results():
    text = format_results({"m": {"error": 0.125, "seconds": 0.5, "labels": []}})
    assert text.splitlines()[1].split() == ["m", "12.50", "%", "0.500", "s"]


def test_cli_reexports_run_demo():
    assert cli.run_demo is demo.run_demo


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"scenario": "stripes"}, "scenario"),
        ({"size": 1}, "size"),
        ({"size": 2.5}, "size"),
        ({"size": 30000}, "size"),
        ({"size": 512, "n_train": 20}, "size"),  # 512**2 * 23 > 2**22
        ({"n_train": 0}, "n_train"),
        ({"n_test": 0}, "n_test"),
        ({"noise": -1.0}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"noise": float("inf")}, "noise"),
        ({"rho": 0.0}, "rho"),
        ({"rho": 1e-320}, "rho"),
        ({"rho": "fast"}, "rho"),
        ({"T": float("inf")}, "T"),
        ({"T": -1.0}, "T"),
        ({"krylov_dim": 0}, "krylov_dim"),
        ({"krylov_dim": 10**6}, "krylov_dim"),
        ({"step_size": -0.5}, "step_size"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_iter": 10**6}, "max_iter"),
        ({"random_state": -1}, "random_state"),
        ({"random_state": "x"}, "random_state"),
        ({"output": 3}, "output"),
        ({"verbose": "yes"}, "verbose"),
    ],
)
def test_run_demo_rejects_bad_arguments_before_work(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        run_demo(**kw)


def test_run_demo_output_directory_must_exist(tmp_path):
    with pytest.raises(ValueError, match="output"):
        run_demo(output=tmp_path / "nodir" / "demo.png")


def test_the_pixel_bound_is_size_squared_times_the_scenes(monkeypatch):
    assert DEMO_MAX_PIXELS == 2**22
    monkeypatch.setattr(demo, "DEMO_MAX_PIXELS", 200)
    kw = dict(n_train=1, n_test=1, max_iter=1, output=None, verbose=False)
    assert set(run_demo(size=10, **kw)["results"]) == METHODS  # 10**2 * 2 == 200
    with pytest.raises(ValueError, match="size"):
        run_demo(size=11, **kw)
