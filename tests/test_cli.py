"""The command line on real files, in-process through ``cli.main`` (plus one subprocess).

Every failure must end in exactly one line ``assignflow <command>: error: ...; <hint>``
on stderr with exit code 2 (130 after Ctrl-C) and no traceback; no run may overwrite
an input, let two outputs collide, or replace an existing file without
``--overwrite``. Inputs are tiny.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import ConvergenceWarning
from test_io import write_png

import assignflow as af
from assignflow import cli
from assignflow.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROOT = Path(__file__).resolve().parents[1]
X8, Y8 = af.datasets.make_voronoi("lines", 2, (8, 8), noise=0.2, random_state=0)


def tiny_model() -> af.ImageLabeler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return af.ImageLabeler(rho=0.1, T=1.0, max_iter=1, n_prototypes=3, random_state=0).fit(
            X8[:1], Y8[:1]
        )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    Image.fromarray((np.clip(X8[0], 0, 1) * 255).astype(np.uint8)).save(d / "img.png")
    Image.fromarray(Y8[0].astype(np.uint8)).save(d / "lab.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "rgb.png")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 128
    Image.fromarray(rgba).save(d / "rgba.png")
    (d / "text.png").write_text("this is not an image")
    png = (d / "img.png").read_bytes()
    (d / "trunc.png").write_bytes(png[: len(png) // 2])
    np.save(d / "img.npy", X8[0])
    np.save(d / "lab.npy", Y8[0])
    np.save(d / "labf.npy", Y8[0] + 0.5)
    np.save(d / "lab5.npy", Y8[0][:5])
    np.save(d / "nan.npy", np.full((8, 8), np.nan))
    np.save(d / "empty.npy", np.zeros((0, 0)))
    np.save(d / "4d.npy", np.zeros((2, 2, 2, 2)))
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "trunc.npy").write_bytes((d / "img.npy").read_bytes()[:100])
    # a PNG header claiming 20000 x 20000 pixels, 60 bytes in all (see test_io.py)
    write_png(d / "bomb.png", 20000, 20000, 8, 0, b"\x00" * 10)
    af.save(tiny_model(), d / "m.afm")
    return d


def run(argv, files=None, capsys=None):
    """``main(argv)`` with ``@`` standing for the files directory; (code, out, err)."""
    if files is not None:
        argv = [a.replace("@", str(files) + "/") for a in argv]
    code = main(argv)
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def assert_one_error_line(err: str, command: str, match: str | None = None) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"assignflow {command}: error: "), lines[0]
    assert "; " in lines[0]  # the hint
    if match is not None:
        assert re.search(match, lines[0]), lines[0]
    return lines[0]


# =========================================================================== bad input
FIT = ["fit", "--images", "@img.png", "--output", "@m2.afm", "--labels"]
BAD_CLI = [
    # label: files
    ("label-missing", ["label", "@missing.png"], "missing.png' does not exist"),
    ("label-text-as-png", ["label", "@text.png"], "cannot read .*text.png"),
    ("label-truncated-png", ["label", "@trunc.png"], "cannot read .*trunc.png"),
    ("label-pickled-npy", ["label", "@obj.npy"], "obj.npy.*pickle"),
    ("label-truncated-npy", ["label", "@trunc.npy"], "cannot read .*trunc.npy"),
    ("label-nan-npy", ["label", "@nan.npy"], "nan.npy' contains NaN"),
    ("label-empty-npy", ["label", "@empty.npy"], "empty.npy' holds an empty image"),
    ("label-4d-npy", ["label", "@4d.npy"], r"4d.npy' must hold a numeric \(h, w\)"),
    ("label-directory", ["label", "@"], "not a regular file"),
    ("label-huge-header", ["label", "@bomb.png"], "max_pixels"),
    ("label-max-pixels", ["label", "@img.png", "--max-pixels", "63"], "max_pixels"),
    ("label-alpha", ["label", "@rgba.png"], "alpha"),
    # label: options
    ("label-prototypes-text", ["label", "@img.png", "--prototypes", "a,b"], "--prototypes"),
    ("label-prototypes-ragged", ["label", "@img.png", "--prototypes", "0;1,1"], "--prototypes"),
    ("label-prototypes-channels", ["label", "@img.png", "--prototypes", "0,0;1,1"],
     "--prototypes"),
    ("label-n-labels-zero", ["label", "@img.png", "--n-labels", "0"], "--n-labels"),
    ("label-n-labels-too-many", ["label", "@img.png", "--n-labels", "100"], "--n-labels"),
    ("label-radius-negative", ["label", "@img.png", "--radius", "-1"], "radius"),
    ("label-output-no-dir", ["label", "@img.png", "--output", "@nodir/x"], "--output"),
    ("label-T-overflow", ["label", "@img.png", "--prototypes", "0;1", "--T", "1e4",
                          "--output", "@t1e4"], "--T"),
    # label --model
    ("label-model-missing", ["label", "@img.png", "--model", "@missing.afm"], "missing.afm"),
    ("label-model-not-a-model", ["label", "@img.png", "--model", "@text.png"], "model"),
    ("label-model-channels", ["label", "@rgb.png", "--model", "@m.afm"], "channel"),
    ("label-model-and-rho", ["label", "@img.png", "--model", "@m.afm", "--rho", "0.5"],
     "--rho"),
    ("label-model-and-prototypes", ["label", "@img.png", "--model", "@m.afm",
                                    "--prototypes", "0;1"], "--prototypes"),
    # fit
    ("fit-count-mismatch", ["fit", "--images", "@img.png", "@img.png", "--labels", "@lab.png",
                            "--output", "@m2.afm"], "--images and --labels"),
    ("fit-label-missing", [*FIT, "@missing.npy"], "missing.npy' does not exist"),
    ("fit-label-pickled", [*FIT, "@obj.npy"], "obj.npy.*pickle"),
    ("fit-label-float", [*FIT, "@labf.npy"], "integer"),
    ("fit-label-shape", [*FIT, "@lab5.npy"], "label_images"),
    ("fit-label-text", [*FIT, "@text.png"], "text.png"),
    ("fit-output-no-dir", ["fit", "--images", "@img.png", "--labels", "@lab.npy", "--output",
                           "@nodir/m.afm"], "--output"),
    ("fit-max-iter-zero", [*FIT, "@lab.npy", "--max-iter", "0"], "max_iter"),
    ("fit-n-prototypes-zero", [*FIT, "@lab.npy", "--n-prototypes", "0"], "n_prototypes"),
    ("fit-n-layers-zero", [*FIT, "@lab.npy", "--n-layers", "0"], "n_layers"),
    ("fit-predictor-unknown", [*FIT, "@lab.npy", "--predictor", "nope"], "nope"),
    # predict
    ("predict-model-missing", ["predict", "--model", "@missing.afm", "@img.png"], "missing.afm"),
    ("predict-model-corrupt", ["predict", "--model", "@trunc.png", "@img.png"], "model"),
    ("predict-image-missing", ["predict", "--model", "@m.afm", "@missing.png"],
     "does not exist"),
    ("predict-output-dir-under-file", ["predict", "--model", "@m.afm", "@img.png",
                                       "--output-dir", "@text.png/sub"], "text.png"),
    ("predict-channels", ["predict", "--model", "@m.afm", "@rgb.png"], "channel"),
    # demo: checked before the fit
    ("demo-size-zero", ["demo", "--size", "0", "--no-figure"], "size"),
    ("demo-size-huge", ["demo", "--size", "30000", "--no-figure"], "size"),
    ("demo-n-train-zero", ["demo", "--n-train", "0", "--no-figure"], "n_train"),
    ("demo-n-test-zero", ["demo", "--n-test", "0", "--no-figure"], "n_test"),
    ("demo-noise-negative", ["demo", "--noise", "-1", "--no-figure"], "noise"),
    ("demo-noise-nan", ["demo", "--noise", "nan", "--no-figure"], "noise"),
    ("demo-max-iter-zero", ["demo", "--max-iter", "0", "--no-figure"], "max_iter"),
    ("demo-krylov-dim-zero", ["demo", "--krylov-dim", "0", "--no-figure"], "krylov_dim"),
    ("demo-krylov-dim-huge", ["demo", "--krylov-dim", "1000000", "--no-figure"], "krylov_dim"),
    ("demo-step-size-negative", ["demo", "--step-size", "-0.5", "--no-figure"], "step_size"),
    ("demo-seed-negative", ["demo", "--seed", "-1", "--no-figure"], "random_state"),
    ("demo-output-no-dir", ["demo", "--output", "@nodir/demo.png"], "--output"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CLI])
def test_bad_input_exits_with_one_error_line(files, capsys, argv, match):
    code, _, err = run(argv, files, capsys)
    assert code == 2
    assert_one_error_line(err, argv[0], match)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["demo", "--size", "abc"], id="demo-size-not-int"),
        pytest.param(["demo", "--scenario", "stripes"], id="demo-scenario-unknown"),
        pytest.param(["plugins", "extra"], id="plugins-extra-argument"),
        pytest.param(["bogus"], id="unknown-command"),
        pytest.param([], id="no-command"),
        pytest.param(["fit", "--images", "a.png"], id="fit-missing-required"),
        pytest.param(["predict", "--model", "m.afm"], id="predict-no-images"),
        pytest.param(["label", "x.png", "--rho", "1e-320"], id="rho-subnormal"),
        pytest.param(["label", "x.png", "--rho", "0"], id="rho-zero"),
        pytest.param(["label", "x.png", "--rho", "-1"], id="rho-negative"),
        pytest.param(["label", "x.png", "--rho", "nan"], id="rho-nan"),
        pytest.param(["fit", "--images", "a", "--labels", "b", "--output", "m", "--rho", "inf"],
                     id="fit-rho-inf"),
        pytest.param(["label", "x.png", "--T", "0"], id="T-zero"),
        pytest.param(["label", "x.png", "--T", "inf"], id="T-inf"),
        pytest.param(["demo", "--T", "-1"], id="demo-T-negative"),
        pytest.param(["demo", "--rho", "1e-320"], id="demo-rho-subnormal"),
        pytest.param(["label", "x.png", "--max-pixels", "0"], id="max-pixels-zero"),
        pytest.param(["label", "x.png", "--alpha", "ignore"], id="alpha-unknown"),
    ],
)  # fmt: skip
def test_argument_errors_exit_with_one_error_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("assignflow") and ": error: " in lines[0]
    assert "--help" in lines[0]  # the hint
    for opt in ("--rho", "--T", "--max-pixels", "--alpha"):
        if opt in argv:
            assert opt in lines[0]


@pytest.mark.parametrize(
    ("exc", "code", "match"),
    [
        (ValueError("bad value"), 2, "bad value; see 'assignflow label --help'"),
        (TypeError("bad type"), 2, "bad type"),
        (FileNotFoundError(2, "No such file or directory", "f.x"), 2, "No such file.*f.x"),
        (PermissionError(13, "Permission denied", "f.x"), 2, "Permission denied.*permissions"),
        (MemoryError("Unable to allocate 33 GiB"), 2, "out of memory.*float32"),
        (FloatingPointError("non-finite values"), 2, "non-finite.*--T"),
        (OverflowError("overflow"), 2, "overflow.*--rho"),
        (RuntimeError("step size collapsed"), 2, "collapsed"),
        (RuntimeWarning("invalid value"), 2, "invalid value"),
        (KeyError("boom"), 2, "unexpected KeyError.*bug"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_every_failure_class_ends_in_one_line(
    files, capsys, monkeypatch, tmp_path, exc, code, match
):
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(cli, "label_graph", fail)
    out = tmp_path / "o"
    got, _, err = run(["label", str(files / "img.png"), "--prototypes", "0;1", "--output",
                       str(out)], capsys=capsys)  # fmt: skip
    assert got == code
    assert_one_error_line(err, "label", match)
    assert os.listdir(tmp_path) == []


def test_closed_stdout_stops_quietly(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(af.registry, "all_registries", broken)
    code, _, err = run(["plugins"], capsys=capsys)
    assert code == 141 and err == ""


def test_interrupt_while_writing_leaves_no_partial_file(files, capsys, monkeypatch, tmp_path):
    def interrupted_save(path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(af.io.np, "save", interrupted_save)
    code, _, err = run(["label", str(files / "img.npy"), "--prototypes", "0;1", "--output",
                        str(tmp_path / "o")], capsys=capsys)  # fmt: skip
    assert code == 130
    assert_one_error_line(err, "label", "interrupted")
    assert os.listdir(tmp_path) == ["o.png"]  # complete; the .npy was never renamed into place


# =========================================================================== no data loss
def test_output_equal_to_input_is_refused_even_with_overwrite(tmp_path, capsys):
    np.save(tmp_path / "v.npy", X8[0])
    before = (tmp_path / "v.npy").read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = run(["label", str(tmp_path / "v.npy"), "--output", str(tmp_path / "v.npy"),
                            "--prototypes", "0;1", *extra], capsys=capsys)  # fmt: skip
        assert code == 2
        assert_one_error_line(err, "label", "overwrite the input")
    assert (tmp_path / "v.npy").read_bytes() == before
    assert os.listdir(tmp_path) == ["v.npy"]


def test_symlinked_output_to_an_input_is_refused(tmp_path, capsys):
    np.save(tmp_path / "v.npy", X8[0])
    os.symlink(tmp_path / "v.npy", tmp_path / "o.npy")
    code, _, err = run(["label", str(tmp_path / "v.npy"), "--output", str(tmp_path / "o"),
                        "--prototypes", "0;1", "--overwrite"], capsys=capsys)  # fmt: skip
    assert code == 2
    assert_one_error_line(err, "label", "input")
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), X8[0])


def test_existing_output_is_refused_unless_overwrite(tmp_path, capsys):
    np.save(tmp_path / "v.npy", X8[0])
    (tmp_path / "v-labels.png").write_bytes(b"precious")
    argv = ["label", str(tmp_path / "v.npy"), "--prototypes", "0;1"]
    code, _, err = run(argv, capsys=capsys)
    assert code == 2
    assert_one_error_line(err, "label", "--overwrite")
    assert (tmp_path / "v-labels.png").read_bytes() == b"precious"
    assert not (tmp_path / "v-labels.npy").exists()
    code, out, _ = run([*argv, "--overwrite"], capsys=capsys)
    assert code == 0 and "v-labels.npy" in out
    assert np.load(tmp_path / "v-labels.npy").shape == (8, 8)
    assert sorted(os.listdir(tmp_path)) == ["v-labels.npy", "v-labels.png", "v.npy"]


def test_predict_outputs_never_collide(files, tmp_path, capsys):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "x.npy", X8[0])
    model = str(files / "m.afm")
    a, b = str(tmp_path / "d1" / "x.npy"), str(tmp_path / "d2" / "x.npy")
    code, _, err = run(["predict", "--model", model, a, b, "--output-dir",
                        str(tmp_path / "out")], capsys=capsys)  # fmt: skip
    assert code == 2
    assert_one_error_line(err, "predict", "both be written")
    assert not (tmp_path / "out").exists()
    # the same image twice, and x.png beside x.npy, collide too
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "d1" / "x.png")
    for images in ([a, a], [a, str(tmp_path / "d1" / "x.png")]):
        code, _, err = run(["predict", "--model", model, *images, "--overwrite"], capsys=capsys)
        assert code == 2
        assert_one_error_line(err, "predict", "both be written")
    # without --output-dir the results go beside the images: no collision
    assert run(["predict", "--model", model, a, b], capsys=capsys)[0] == 0
    for d in ("d1", "d2"):
        assert (tmp_path / d / "x-labels.npy").exists()


def test_predict_refuses_to_overwrite_an_input_given_as_image(files, tmp_path, capsys):
    np.save(tmp_path / "x.npy", X8[0])
    np.save(tmp_path / "x-labels.npy", X8[1])  # an image that is also x.npy's output name
    before = (tmp_path / "x-labels.npy").read_bytes()
    code, _, err = run(["predict", "--model", str(files / "m.afm"), str(tmp_path / "x.npy"),
                        str(tmp_path / "x-labels.npy"), "--overwrite"], capsys=capsys)  # fmt: skip
    assert code == 2
    assert_one_error_line(err, "predict", "input")
    assert (tmp_path / "x-labels.npy").read_bytes() == before


def test_fit_output_rules(files, tmp_path, capsys):
    img = tmp_path / "img.npy"
    np.save(img, X8[0])
    base = ["fit", "--images", str(img), "--labels", str(files / "lab.npy"), "--max-iter", "1",
            "--n-prototypes", "3"]  # fmt: skip
    code, _, err = run([*base, "--output", str(img), "--overwrite"], capsys=capsys)
    assert code == 2
    assert_one_error_line(err, "fit", "input")
    np.testing.assert_array_equal(np.load(img), X8[0])
    (tmp_path / "m.afm").write_bytes(b"old model")
    code, _, err = run([*base, "--output", str(tmp_path / "m.afm")], capsys=capsys)
    assert code == 2
    assert_one_error_line(err, "fit", "--overwrite")
    assert (tmp_path / "m.afm").read_bytes() == b"old model"


def test_demo_figure_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "demo.png").write_bytes(b"precious")
    code, _, err = run(["demo", "--output", str(tmp_path / "demo.png")], capsys=capsys)
    assert code == 2
    assert_one_error_line(err, "demo", "--overwrite")
    assert (tmp_path / "demo.png").read_bytes() == b"precious"


# =========================================================================== commands work
def test_label_uniform_matches_label_graph(files, tmp_path, capsys):
    argv = ["label", str(files / "img.npy"), "--prototypes", "0;1", "--output",
            str(tmp_path / "o"), "--rho", "0.1", "--T", "1"]  # fmt: skip
    code, out, _ = run(argv, capsys=capsys)
    assert code == 0 and "o.png" in out and "o.npy" in out
    ref = af.label_graph(af.GridGraph((8, 8)), X8[0].reshape(-1, 1), [0.0, 1.0], rho=0.1, T=1.0)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), ref.labels.reshape(8, 8))
    rgb = af.io.read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(rgb[..., 0], np.load(tmp_path / "o.npy"))


def test_label_kmeans_on_a_colour_png(tmp_path, capsys):
    X, _ = af.datasets.make_voronoi("colors", 1, (12, 12), noise=0.05, random_state=0)
    Image.fromarray((np.clip(X[0], 0, 1) * 255).astype(np.uint8)).save(tmp_path / "c.png")
    code, _, _ = run(["label", str(tmp_path / "c.png"), "--n-labels", "3", "--dtype", "float32"],
                     capsys=capsys)  # fmt: skip
    assert code == 0
    labels = np.load(tmp_path / "c-labels.npy")
    assert labels.shape == (12, 12) and set(np.unique(labels)) <= {0, 1, 2}


def test_label_alpha_option(files, tmp_path, capsys):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = (X8[0] > 0.5) * 255
    rgba[..., 3] = 100
    Image.fromarray(rgba).save(tmp_path / "a.png")
    code, _, err = run(["label", str(tmp_path / "a.png")], capsys=capsys)
    assert code == 2
    assert_one_error_line(err, "label", "--alpha")
    code, _, _ = run(["label", str(tmp_path / "a.png"), "--alpha", "drop", "--prototypes",
                      "0,0,0;1,0,0"], capsys=capsys)  # fmt: skip
    assert code == 0


def test_label_with_a_model_matches_predict(files, tmp_path, capsys):
    code, _, _ = run(["label", str(files / "img.npy"), "--model", str(files / "m.afm"),
                      "--output", str(tmp_path / "o")], capsys=capsys)  # fmt: skip
    assert code == 0
    model = af.load(files / "m.afm")
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), model.predict([X8[0]])[0])


def test_fit_then_predict_with_colour_label_pngs(tmp_path, capsys):
    X, Y = af.datasets.make_voronoi("colors", 3, (10, 10), noise=0.1, random_state=2)
    P = af.datasets.voronoi_prototypes("colors")
    images, labels = [], []
    for k in range(3):
        Image.fromarray((np.clip(X[k], 0, 1) * 255).astype(np.uint8)).save(tmp_path / f"i{k}.png")
        Image.fromarray((P[Y[k]] * 255).astype(np.uint8)).save(tmp_path / f"l{k}.png")
        images.append(str(tmp_path / f"i{k}.png"))
        labels.append(str(tmp_path / f"l{k}.png"))
    code, out, err = run(["fit", "--images", *images, "--labels", *labels, "--output",
                          str(tmp_path / "m.afm"), "--max-iter", "2", "--n-prototypes", "4"],
                         capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert "model written" in out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    model = af.load(tmp_path / "m.afm")
    # colour classes are numbered jointly: the model's prototypes match the colours
    colours = np.unique(np.concatenate([P[y].reshape(-1, 3) for y in Y]), axis=0)
    assert len(model.classes_) == len(colours)
    code, out, _ = run(["predict", "--model", str(tmp_path / "m.afm"), images[0],
                        "--output-dir", str(tmp_path / "out")], capsys=capsys)  # fmt: skip
    assert code == 0
    pred = np.load(tmp_path / "out" / "i0-labels.npy")
    assert pred.shape == (10, 10) and set(np.unique(pred)) <= set(model.classes_)


def test_predict_creates_the_output_dir(files, tmp_path, capsys):
    out = tmp_path / "new" / "dir"
    code, _, _ = run(["predict", "--model", str(files / "m.afm"), str(files / "img.npy"),
                      "--output-dir", str(out)], capsys=capsys)  # fmt: skip
    assert code == 0
    pred = np.load(out / "img-labels.npy")
    assert pred.shape == (8, 8) and set(np.unique(pred)) <= {0, 1}


def test_one_pixel_image(tmp_path, capsys):
    np.save(tmp_path / "px.npy", np.array([[0.8]]))
    assert run(["label", str(tmp_path / "px.npy"), "--prototypes", "0;1"], capsys=capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "px-labels.npy"), [[1]])


def test_plugins_lists_the_builtins(capsys):
    code, out, _ = run(["plugins"], capsys=capsys)
    assert code == 0
    for name in ("grid", "exponential_krylov", "euler", "geometric_euler"):
        assert name in out
    assert "[assignflow]" in out
    for kind in af.registry.all_registries():
        assert f"{kind}:" in out


def test_demo_quiet_prints_only_the_table(capsys):
    code, out, err = run(["demo", "--size", "12", "--n-train", "2", "--n-test", "1",
                          "--max-iter", "1", "--no-figure", "--quiet"], capsys=capsys)  # fmt: skip
    assert code == 0 and err == ""
    assert out.splitlines()[0].strip().startswith("method") and "pixelwise rounding" in out


# =========================================================================== help, defaults
def subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("command", ["demo", "label", "fit", "predict", "plugins"])
def test_every_option_has_help_and_shows_its_default(command, capsys):
    sub = subparsers()[command]
    for action in sub._actions:
        assert action.help, action.dest
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for action in sub._actions:
        if action.option_strings and not (
            action.default is None or action.default is False or action.default == "==SUPPRESS=="
        ):
            assert f"default: {action.default}" in " ".join(text.split()), action.dest


def defaults(command):
    return {a.dest: a.default for a in subparsers()[command]._actions}


def test_rho_and_T_default_to_the_library():
    lg = inspect.signature(af.label_graph).parameters
    il = inspect.signature(af.ImageLabeler).parameters
    assert defaults("label")["rho"] == lg["rho"].default
    assert defaults("label")["T"] == lg["T"].default
    assert defaults("label")["dtype"] == lg["dtype"].default
    for command in ("fit", "demo"):
        assert defaults(command)["rho"] == il["rho"].default
        assert defaults(command)["T"] == il["T"].default
    for name in ("n_layers", "predictor", "radius", "n_prototypes", "max_iter", "features"):
        assert defaults("fit")[name] == il[name].default


# =========================================================================== warnings, progress
@pytest.fixture
def warning_label(files, tmp_path, monkeypatch):
    """A ``label`` run during which the library warns (a two-line message)."""
    real = cli.label_graph

    def warn_then_label(*args, **kwargs):
        warnings.warn("careful: rho is large\nsecond line", UserWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "label_graph", warn_then_label)
    return ["label", str(files / "img.npy"), "--prototypes", "0;1", "--output",
            str(tmp_path / "o")]  # fmt: skip


def test_warnings_are_one_line_and_the_hook_is_restored(warning_label, capsys, monkeypatch):
    def show(message, category, filename, lineno, file=None, line=None):
        # what the standard showwarning does (pytest records warnings instead)
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", show)
    saved = warnings.formatwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, _, err = run(warning_label, capsys=capsys)
    assert code == 0
    assert err == "assignflow label: warning: careful: rho is large second line\n"
    assert warnings.formatwarning is saved


def test_warning_categories_other_than_userwarning_are_named():
    with cli._one_line_warnings("fit"):
        line = warnings.formatwarning("slow", ConvergenceWarning, "x.py", 1)
        plain = warnings.formatwarning("plain", UserWarning, "x.py", 1)
    assert line == "assignflow fit: warning: slow (ConvergenceWarning)\n"
    assert plain == "assignflow fit: warning: plain\n"


def test_warnings_reach_code_that_records_them(warning_label, capsys):
    with pytest.warns(UserWarning, match="careful"):
        assert run(warning_label, capsys=capsys)[0] == 0


@pytest.fixture
def tty(monkeypatch):
    """Pretend that stderr is a terminal (capsys captures it)."""

    def enable():
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)

    return enable


def test_label_progress_on_a_terminal_only(files, tmp_path, capsys, tty):
    argv = ["label", str(files / "img.npy"), "--prototypes", "0;1", "--overwrite", "--output",
            str(tmp_path / "o")]  # fmt: skip
    assert run(argv, capsys=capsys)[2] == ""  # not a terminal
    tty()
    err = run(argv, capsys=capsys)[2]
    assert "label:" in err and "100%" in err
    assert run([*argv, "--quiet"], capsys=capsys)[2] == ""


def test_predict_and_fit_progress(files, tmp_path, capsys, tty):
    tty()
    err = run(["predict", "--model", str(files / "m.afm"), str(files / "img.npy"),
               "--output-dir", str(tmp_path)], capsys=capsys)[2]  # fmt: skip
    assert "predict:" in err and "100%" in err
    err = run(["fit", "--images", str(files / "img.npy"), "--labels", str(files / "lab.npy"),
               "--output", str(tmp_path / "m.afm"), "--max-iter", "2", "--n-prototypes", "3"],
              capsys=capsys)[2]  # fmt: skip
    assert "fit:" in err and "2/2" in err and "loss=" in err and "train=" in err


@pytest.mark.parametrize("command", ["label", "predict"])
def test_progress_hooks_receive_fractions(files, tmp_path, monkeypatch, capsys, command):
    if command == "label" and "progress" not in inspect.signature(af.label_graph).parameters:
        pytest.skip("label_graph has no progress hook yet")
    seen = []
    real = cli._Progress.to

    def spy(self, position):
        seen.append(position)
        real(self, position)

    monkeypatch.setattr(cli._Progress, "to", spy)
    if command == "label":
        argv = ["label", str(files / "img.npy"), "--prototypes", "0;1", "--output",
                str(tmp_path / "o")]  # fmt: skip
    else:
        np.save(tmp_path / "other.npy", X8[1])
        argv = ["predict", "--model", str(files / "m.afm"), str(files / "img.npy"),
                str(tmp_path / "other.npy"), "--output-dir", str(tmp_path)]  # fmt: skip
    assert run(argv, capsys=capsys)[0] == 0
    total = 1 if command == "label" else 2
    inside = [s for s in seen if 0 < s < total and s != 1]
    assert inside, seen  # reported from within the solves, not only at the end
    assert seen == sorted(seen) and seen[-1] == total


# =========================================================================== entry point
def test_module_entry_point_help():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "assignflow", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("demo", "label", "fit", "predict", "plugins"):
        assert command in proc.stdout
