"""``assignflow.save``/``assignflow.load``: the persistence protocol and bounded, safe loading.

Round trips are exact; corrupt, truncated, tampered, oversized or non-regular files end
in one ``ValueError`` naming the file (messages are matched on the file, member,
argument or attribute they name, never whole); files crafted to run code are refused
without running it (payloads that would create a marker file); every size is bounded
before it is read or built.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import re
import threading
import warnings
import zipfile

import attrs
import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

import assignflow as af
from assignflow import persistence

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X8, Y8 = af.datasets.make_voronoi("lines", 3, (8, 8), noise=0.2, random_state=0)
TAB_X = np.random.default_rng(0).normal(size=(30, 2))
TAB_Y = (TAB_X[:, 0] + 0.3 * TAB_X[:, 1] > 0).astype(int)


def tiny(**kw) -> af.ImageLabeler:
    params = dict(rho=0.1, T=1.0, max_iter=2, n_prototypes=3, random_state=0)
    params.update(kw)
    return af.ImageLabeler(**params)


# =========================================================================== file helpers
def read_model(path) -> tuple[dict, dict]:
    """``meta`` and the arrays of a good model file."""
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
        with np.load(io.BytesIO(z.read("arrays.npz")), allow_pickle=False) as f:
            return meta, {k: f[k] for k in f.files}


def refs(meta) -> set[str]:
    return persistence._array_refs(meta)


def npz_bytes(arrays: dict) -> bytes:
    """An npz of arrays (``.npy`` members); ``bytes`` values are written as raw members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in arrays.items():
            if isinstance(v, bytes):
                z.writestr(f"{k}.npy", v)
            else:
                npy = io.BytesIO()
                np.save(npy, v, allow_pickle=False)
                z.writestr(f"{k}.npy", npy.getvalue())
    return buf.getvalue()


def write_model(path, meta=None, arrays=None, *, members=None, compression=zipfile.ZIP_STORED):
    """A zip with ``meta`` (dict or bytes) and ``arrays`` (npz bytes, or a dict keeping
    only the arrays ``meta`` refers to), plus raw ``members``."""
    out = {}
    if meta is not None:
        out["meta.json"] = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    if isinstance(arrays, dict):
        keep = refs(meta) if isinstance(meta, dict) else set(arrays)
        arrays = npz_bytes({k: v for k, v in arrays.items() if k in keep})
    if arrays is not None:
        out["arrays.npz"] = arrays
    out.update(members or {})
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in out.items():
            z.writestr(name, data)
    return path


def npy_header(shape, descr="<f8", version=(1, 0), fortran=False) -> bytes:
    buf = io.BytesIO()
    d = {"descr": descr, "fortran_order": fortran, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, d)
    else:
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def refused(path, *names, exc=ValueError, **kw) -> str:
    """``load(path)`` raises ``exc`` naming the file and every regex in ``names``."""
    with pytest.raises(exc) as info:
        af.load(path, **kw)
    msg = str(info.value)
    assert os.path.basename(str(path)) in msg, msg
    for name in names:
        assert re.search(name, msg), (name, msg)
    return msg


def _set(*keys, value):
    """A function setting ``meta[k0][k1]...`` (deleting it for ``value=DEL``)."""

    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        if value is DEL:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
        return meta

    return change


DEL = object()
P = ("params", "__dict__")
F = ("fitted", "__dict__")


def _groups(meta) -> list:
    """The feature groups of the first layer's edge predictor in a model's meta."""
    return meta["fitted"]["__dict__"]["predictors_"]["__seq__"][0]["fields"]["groups"]["__seq__"]


def fitted_key(meta, *keys) -> str:
    d = meta["fitted"]["__dict__"]
    for k in keys:
        d = d[k]
    return d["__array__"]


# =========================================================================== fixtures
@pytest.fixture(scope="module")
def labeler() -> af.ImageLabeler:
    """The default model: a 2-layer deep LAF with edge predictors (registered components)."""
    return tiny().fit(X8[:2], Y8[:2])


@pytest.fixture(scope="module")
def saved(labeler, tmp_path_factory):
    """Path, meta and arrays of a good ImageLabeler model file."""
    path = tmp_path_factory.mktemp("good") / "good.afm"
    af.save(labeler, path)
    return (path, *read_model(path))


@pytest.fixture(scope="module")
def proto_labeler() -> af.ImageLabeler:
    """The paper's model: the prototype predictor (a persistable value class)."""
    return tiny(predictor="prototype", n_layers=1).fit(X8[:2], Y8[:2])


@pytest.fixture(scope="module")
def saved_proto(proto_labeler, tmp_path_factory):
    path = tmp_path_factory.mktemp("proto") / "proto.afm"
    af.save(proto_labeler, path)
    return (path, *read_model(path))


def same_predictors(a, b) -> bool:
    if len(a) != len(b) or any(type(p) is not type(q) for p, q in zip(a, b, strict=True)):
        return False
    return all(
        p.params().keys() == q.params().keys()
        and all(np.array_equal(v, q.params()[k]) for k, v in p.params().items())
        for p, q in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module")
def classifier() -> af.AssignmentFlowClassifier:
    return af.AssignmentFlowClassifier(n_neighbors=4).fit(TAB_X, TAB_Y)


@pytest.fixture(scope="module")
def saved_classifier(classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "c.afm"
    af.save(classifier, path)
    return (path, *read_model(path))


# =========================================================================== round trips
@pytest.mark.parametrize("which", ["edge", "prototype"])
def test_round_trip_image_labeler_exact(labeler, saved, proto_labeler, saved_proto, which):
    labeler, (path, meta, _) = (labeler, saved) if which == "edge" else (proto_labeler, saved_proto)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["arrays.npz", "meta.json"]
    assert (
        meta["class"] == "ImageLabeler" and meta["format_version"] == af.persistence.FORMAT_VERSION
    )
    back = af.load(path)
    assert type(back) is af.ImageLabeler
    assert back.get_params() == labeler.get_params()
    np.testing.assert_array_equal(back.classes_, labeler.classes_)
    assert same_predictors(back.predictors_, labeler.predictors_)
    assert same_predictors([back.predictor_], [labeler.predictor_])
    np.testing.assert_array_equal(back.rho_, labeler.rho_)
    np.testing.assert_array_equal(back.T_, labeler.T_)
    assert (back.n_iter_, back.best_iter_) == (labeler.n_iter_, labeler.best_iter_)
    for k in labeler.history_:
        np.testing.assert_array_equal(back.history_[k], labeler.history_[k])
    assert np.array_equal(back.predict_proba(X8[2:]), labeler.predict_proba(X8[2:]))
    assert np.array_equal(back.predict(X8), labeler.predict(X8))


@pytest.mark.parametrize("learn", [False, True], ids=["uniform-weights", "learned-weights"])
def test_round_trip_classifier_exact(tmp_path, learn):
    clf = af.AssignmentFlowClassifier(
        n_neighbors=5, learn_weights=learn, max_iter=2, integrator=af.Euler(step_size=0.1)
    )
    clf.fit(TAB_X[:20], np.where(TAB_Y[:20] == 1, "pos", "neg"))
    af.save(clf, tmp_path / "c.afm")
    back = af.load(tmp_path / "c.afm")
    assert back.integrator == af.Euler(step_size=0.1)
    assert np.array_equal(back.predict_proba(TAB_X[20:]), clf.predict_proba(TAB_X[20:]))
    assert list(back.classes_) == ["neg", "pos"]
    assert back.graph_ == clf.graph_ and np.array_equal(back.weights_, clf.weights_)
    assert back.rho_ == clf.rho_ and np.array_equal(back.trust_, clf.trust_)
    assert (back.history_ is None) == (clf.history_ is None)


def test_round_trip_with_prototypes_string_classes_and_components(tmp_path):
    lab = tiny(
        prototypes=[[0.0], [1.0]],
        integrator=af.ExponentialKrylov(krylov_dim=8),
        gradient_estimator=af.ClosedFormLowRank(rank=2),
        predictor=af.EdgePredictor,  # a registered component class as a parameter
        n_layers=1,
    )
    lab.fit(X8[:2], np.where(Y8[:2] == 1, "cell", "line"))
    af.save(lab, tmp_path / "m.afm")
    back = af.load(tmp_path / "m.afm")
    assert back.prototypes == [[0.0], [1.0]]
    assert back.integrator == af.ExponentialKrylov(krylov_dim=8)
    assert back.gradient_estimator == af.ClosedFormLowRank(rank=2)
    assert back.predictor is af.EdgePredictor
    assert np.array_equal(back.predict_proba(X8), lab.predict_proba(X8))
    assert set(np.unique(back.predict(X8))) <= {"cell", "line"}


@pytest.mark.parametrize(
    "est",
    [
        af.ImageLabeler(),
        af.ImageLabeler(integrator=af.ExponentialKrylov(krylov_dim=5), rho=0.5, loss=af.KLLoss),
        af.AssignmentFlowClassifier(),
        af.AssignmentFlowClassifier(gradient_estimator=af.AdjointQuadrature(n_nodes=4), rho=2.0),
    ],
    ids=["labeler", "labeler-components", "classifier", "classifier-components"],
)
def test_round_trip_unfitted(tmp_path, est):
    af.save(est, tmp_path / "u.afm")
    back = af.load(tmp_path / "u.afm")
    assert type(back) is type(est) and back.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        back.predict(X8 if isinstance(est, af.ImageLabeler) else TAB_X)


def test_save_does_not_change_the_estimator(labeler, tmp_path):
    before = labeler.predict_proba(X8)
    params = labeler.get_params()
    af.save(labeler, tmp_path / "again.afm")
    assert labeler.get_params() == params
    assert np.array_equal(labeler.predict_proba(X8), before)


def test_failed_save_keeps_the_existing_file(labeler, tmp_path):
    path = tmp_path / "m.afm"
    af.save(labeler, path)
    good = path.read_bytes()
    with pytest.raises(TypeError, match="RandomState"):
        af.save(tiny(random_state=np.random.RandomState(0)), path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.afm"]  # no temporary file left behind


# =========================================================================== the protocol
@persistence.persistable("tests.Probe")
class _Probe(BaseEstimator):
    """A minimal estimator: its fitted state is whatever fit stores (new attributes too)."""

    def __init__(self, *, alpha=1.0, integrator="euler"):
        self.alpha = alpha
        self.integrator = integrator

    def _validate_params(self):
        if not (isinstance(self.alpha, float) and self.alpha > 0):
            raise ValueError(f"alpha must be a float > 0, got {self.alpha!r}")

    def _check_fitted_state(self):
        persistence.check_fitted_int(self.n_iter_, "n_iter_", minimum=1)


@persistence.persistable("tests.Value")
@attrs.frozen
class _Value:
    a: int
    _b: tuple = attrs.field(default=(), alias="b")


def _probe_state():
    g = af.Graph.knn(TAB_X[:6], n_neighbors=2)
    return {
        "n_iter_": 3,
        "graph_": g,
        "grid_": af.GridGraph((3, 4), radius=1),
        "weights_": af.Weights.uniform(g),
        "predictor_": af.WeightPredictor(np.ones((2, 9)), np.zeros((2, 9)), 2.0),
        # a registered component that no persistence code knows: stored by name + fields
        "edge_": af.EdgePredictor(groups=[(0, 2)], theta=[1.0], bias=np.zeros(9), scale=[1.0]),
        "loss_": af.KLLoss(np.array([0, 1, 1])),
        "value_": _Value(1, b=(2.5, "x", None)),
        "fortran_": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "scalars_": {"f": float("inf"), "n": np.int64(7), "b": np.bool_(True), "s": "x"},
        "names_": np.array(["a", "bc"], dtype=object),
        "empty_": np.zeros((0, 3), np.int32),
    }


def test_every_persistable_class_round_trips(tmp_path):
    probe = _Probe(alpha=0.5, integrator=af.LinearizedSequence(inner=af.Euler(step_size=0.2)))
    state = _probe_state()
    for k, v in state.items():
        setattr(probe, k, v)
    af.save(probe, tmp_path / "p.afm")
    back = af.load(tmp_path / "p.afm")
    assert back.get_params() == probe.get_params()
    for k in ("n_iter_", "graph_", "grid_", "weights_", "predictor_", "value_"):
        assert getattr(back, k) == state[k], k
    assert type(back.grid_) is af.GridGraph and type(back.graph_) is af.Graph
    np.testing.assert_array_equal(back.loss_.labels, state["loss_"].labels)
    assert type(back.edge_) is af.EdgePredictor and back.edge_.groups == ((0, 2),)
    f = np.random.default_rng(0).normal(size=(12, 2))
    g = back.grid_
    assert back.edge_.predict_weights(g, f) == state["edge_"].predict_weights(g, f)
    np.testing.assert_array_equal(back.fortran_, state["fortran_"])
    assert back.scalars_ == {"f": float("inf"), "n": 7, "b": True, "s": "x"}
    assert back.names_.dtype == object and list(back.names_) == ["a", "bc"]
    assert back.empty_.shape == (0, 3) and back.empty_.dtype == np.int32


def test_a_new_fitted_attribute_needs_no_change_in_persistence(tmp_path):
    probe = _Probe()
    probe.n_iter_ = 1
    probe.learned_rho_ = 0.25  # an attribute the class did not have before
    probe._private_cache = object()  # private state is not saved
    af.save(probe, tmp_path / "p.afm")
    back = af.load(tmp_path / "p.afm")
    assert back.learned_rho_ == 0.25 and not hasattr(back, "_private_cache")


def test_protocol_hooks_validate_loaded_state(tmp_path):
    probe = _Probe()
    probe.n_iter_ = 1
    af.save(probe, tmp_path / "p.afm")
    meta, arrays = read_model(tmp_path / "p.afm")
    bad = _set(*P, "alpha", value=-1)(copy.deepcopy(meta))
    refused(write_model(tmp_path / "a.afm", bad, arrays), "alpha")
    bad = _set(*F, "n_iter_", value=0)(copy.deepcopy(meta))
    refused(write_model(tmp_path / "n.afm", bad, arrays), "n_iter_")


def test_persistable_rejects_misuse():
    with pytest.raises(TypeError, match="tag"):
        persistence.persistable("")
    with pytest.raises(TypeError, match="attrs class or a scikit-learn estimator"):
        persistence.persistable("tests.Plain")(type("Plain", (), {}))
    with pytest.raises(TypeError, match="fields"):
        persistence.persistable("tests.P2", fields=("a",))(_Probe)
    with pytest.raises(ValueError, match=r"tests\.Probe"):
        persistence.persistable("tests.Probe")(_Value)


def test_check_fitted_helpers():
    a = np.zeros((2, 3))
    assert persistence.check_fitted_array(a, "x_", shape=(None, 3)) is a
    for bad, kw, name in [
        ([[0.0]], {}, "x_"),
        (a, {"shape": (2, 4)}, r"x_ must have shape \(2, 4\)"),
        (a, {"ndim": 1}, "x_ must be a 1-d"),
        (a.astype(int), {}, "x_ must be an array of dtype kind"),
        (a * np.nan, {}, "x_ must be finite"),
        (np.float32([1e30]), {"max_abs": 1e20}, "x_ has values of magnitude"),
    ]:
        with pytest.raises(ValueError, match=name):
            persistence.check_fitted_array(bad, "x_", **kw)
    assert persistence.check_fitted_int(3, "n_") == 3
    for bad in (True, 1.0, -1, "1"):
        with pytest.raises(ValueError, match="n_"):
            persistence.check_fitted_int(bad, "n_")


# =========================================================================== save errors
@pytest.mark.parametrize(
    ("est", "path", "exc", "match"),
    [
        pytest.param(object(), "m.afm", TypeError, "estimator", id="not-estimator"),
        pytest.param("ImageLabeler", "m.afm", TypeError, "estimator", id="str"),
        pytest.param(af.Euler(), "m.afm", TypeError, "estimator", id="component"),
        pytest.param(tiny(), "nodir/m.afm", ValueError, "path", id="no-directory"),
        pytest.param(tiny(), 5, TypeError, "path", id="path-int"),
        pytest.param(tiny(), None, TypeError, "path", id="path-None"),
        pytest.param(
            tiny(random_state=np.random.RandomState(0)),
            "m.afm",
            TypeError,
            r"params\['random_state'\].*RandomState",
            id="unsaveable-param",
        ),
        pytest.param(
            tiny(prototypes=[[0.0]] * 100_000), "m.afm", ValueError, "estimator", id="huge-json"
        ),
    ],
)
def test_save_rejects_bad_input(tmp_path, est, path, exc, match):
    target = str(tmp_path / path) if isinstance(path, str) else path
    with pytest.raises(exc, match=match):
        af.save(est, target)
    assert os.listdir(tmp_path) == []


def test_save_warns_when_load_needs_a_larger_budget(labeler, tmp_path, monkeypatch):
    monkeypatch.setattr(persistence, "DEFAULT_MAX_BYTES", 100)
    with pytest.warns(UserWarning, match="max_bytes"):
        af.save(labeler, tmp_path / "m.afm")


def test_unsaveable_fitted_value_is_located(tmp_path):
    probe = _Probe()
    probe.n_iter_ = 1
    probe.table_ = {"a": [1, object()]}
    with pytest.raises(TypeError, match=r"fitted\['table_'\]\['a'\]\[1\]"):
        af.save(probe, tmp_path / "p.afm")


# =========================================================================== bad paths
@pytest.mark.parametrize(
    ("path", "exc", "match"),
    [
        pytest.param("missing.afm", FileNotFoundError, "missing.afm", id="missing"),
        pytest.param(3, TypeError, "path", id="int-file-descriptor"),
        pytest.param(None, TypeError, "path", id="None"),
        pytest.param(b"model.afm", TypeError, "path", id="bytes"),
    ],
)
def test_load_rejects_bad_paths(tmp_path, monkeypatch, path, exc, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=match):
        af.load(path)


@pytest.mark.parametrize(
    ("value", "exc"),
    [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)],
)
def test_load_rejects_bad_max_bytes(saved, value, exc):
    with pytest.raises(exc, match="max_bytes"):
        af.load(saved[0], max_bytes=value)


# =========================================================================== non-regular files
def _load_in_thread(path, timeout=10.0):
    """``load`` in a daemon thread: a blocking open fails the test instead of hanging it."""
    out = {}

    def run():
        try:
            af.load(path)
        except BaseException as exc:  # reported to the test
            out["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"load({path!r}) blocked"
    return out.get("exc")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
@pytest.mark.parametrize("via_symlink", [False, True], ids=["fifo", "symlink-to-fifo"])
def test_load_refuses_a_fifo_without_blocking(tmp_path, via_symlink):
    fifo = tmp_path / "pipe.afm"
    os.mkfifo(fifo)
    path = fifo
    if via_symlink:
        path = tmp_path / "link.afm"
        path.symlink_to(fifo)
    exc = _load_in_thread(path)
    assert isinstance(exc, ValueError) and path.name in str(exc) and "FIFO" in str(exc)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_load_refuses_dev_zero():
    exc = _load_in_thread("/dev/zero")
    assert isinstance(exc, ValueError) and "/dev/zero" in str(exc) and "device" in str(exc)


def test_load_refuses_a_directory(tmp_path):
    (tmp_path / "model.afm").mkdir()
    refused(tmp_path / "model.afm", "directory")


# =========================================================================== container
def _truncated(frac):
    def make(path, good):
        data = good.read_bytes()
        path.write_bytes(data[: int(len(data) * frac)])

    return make


def _flipped(where):
    """Invert 8 bytes in the compressed data of a member, or in the central directory."""

    def make(path, good):
        data = bytearray(good.read_bytes())
        with zipfile.ZipFile(good) as z:
            if where == "central-directory":
                k = data.rfind(b"PK\x01\x02")
            else:
                info = z.getinfo(where)
                off = info.header_offset
                name_len = int.from_bytes(data[off + 26 : off + 28], "little")
                extra_len = int.from_bytes(data[off + 28 : off + 30], "little")
                k = off + 30 + name_len + extra_len + info.compress_size // 2
        data[k : k + 8] = bytes(b ^ 0xFF for b in data[k : k + 8])
        path.write_bytes(bytes(data))

    return make


def _raw(content):
    def make(path, good):
        path.write_bytes(content)

    return make


def _members(**members):
    """The good file's members, with some replaced (``None`` drops one)."""

    def make(path, good):
        with zipfile.ZipFile(good) as z:
            m = {n: z.read(n) for n in z.namelist()}
        for name, data in members.items():
            name = name.replace("__", ".")
            if data is None:
                m.pop(name)
            else:
                m[name] = data
        write_model(path, members=m)

    return make


def _patch_headers(offset_local, offset_central, value, size=2, member=None):
    """Overwrite a field of every (or one member's) local and central header."""

    def make(path, good):
        data = bytearray(good.read_bytes())
        for sig, off in ((b"PK\x03\x04", offset_local), (b"PK\x01\x02", offset_central)):
            start = 0
            while (k := data.find(sig, start)) >= 0:
                name_at = k + (30 if sig == b"PK\x03\x04" else 46)
                name_len_at = k + (26 if sig == b"PK\x03\x04" else 28)
                n = int.from_bytes(data[name_len_at : name_len_at + 2], "little")
                if member is None or bytes(data[name_at : name_at + n]) == member.encode():
                    data[k + off : k + off + size] = value.to_bytes(size, "little")
                start = k + 4
        path.write_bytes(bytes(data))

    return make


def _duplicate_meta(path, good):
    with zipfile.ZipFile(good) as z:
        meta, arrays = z.read("meta.json"), z.read("arrays.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("meta.json", meta)
            z.writestr("arrays.npz", arrays)
            z.writestr("meta.json", meta)


CONTAINER = [
    ("empty-file", _raw(b""), []),
    ("text-file", _raw(b"not a model"), []),
    ("pickle-file", _raw(pickle.dumps({"a": 1})), []),
    ("truncated-10-bytes", _truncated(0.01), []),
    ("truncated-quarter", _truncated(0.25), []),
    ("truncated-half", _truncated(0.5), []),
    ("truncated-last-bytes", _truncated(0.98), []),
    ("corrupt-meta.json-data", _flipped("meta.json"), []),
    ("corrupt-arrays.npz-data", _flipped("arrays.npz"), []),
    ("corrupt-central-directory", _flipped("central-directory"), []),
    ("empty-zip", _members(meta__json=None, arrays__npz=None), ["meta.json"]),
    ("missing-meta.json", _members(meta__json=None), ["meta.json"]),
    ("missing-arrays.npz", _members(arrays__npz=None), ["arrays.npz"]),
    ("unknown-member", _members(model__pkl=b"x"), ["model.pkl"]),
    ("unknown-directory-member", _members(**{"sub/": b""}), ["sub/"]),
    ("duplicate-member", _duplicate_meta, ["duplicate", "meta.json"]),
    ("encrypted-meta.json", _patch_headers(6, 8, 0x1, member="meta.json"), ["encrypted"]),
    ("encrypted-arrays.npz", _patch_headers(6, 8, 0x1, member="arrays.npz"), ["encrypted"]),
    ("unsupported-compression", _patch_headers(8, 10, 99), ["compression"]),
    ("bzip2-compression", _patch_headers(8, 10, zipfile.ZIP_BZIP2), ["compression"]),
    ("meta-not-json", _members(meta__json=b"{not json"), ["meta.json"]),
    ("meta-not-utf8", _members(meta__json=b"\xff\xfe\x00"), ["meta.json"]),
    ("meta-deeply-nested", _members(meta__json=b"[" * 200_000), ["meta.json"]),
    ("arrays-not-a-zip", _members(arrays__npz=b"\x00garbage" * 10), ["corrupt"]),
    ("arrays-empty", _members(arrays__npz=b""), ["corrupt"]),
    ("arrays-pickle", _members(arrays__npz=pickle.dumps(object())), ["corrupt"]),
]


@pytest.mark.parametrize(("make", "names"), [pytest.param(*c[1:], id=c[0]) for c in CONTAINER])
def test_load_rejects_broken_containers(tmp_path, saved, make, names):
    path = tmp_path / "bad.afm"
    make(path, saved[0])
    refused(path, *names)


# =========================================================================== size limits
def test_padded_meta_json_is_refused_before_reading(tmp_path, saved):
    _, meta, arrays = saved
    padded = json.dumps(meta).encode() + b" " * (persistence.MAX_META_BYTES + 1)
    path = write_model(tmp_path / "pad.afm", padded, arrays, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    refused(path, "meta.json", "limit")


def test_zip_bomb_is_refused_before_inflating(tmp_path, saved):
    """A few-KB file whose arrays.npz inflates to more than the budget."""
    _, meta, arrays = saved
    bomb = npz_bytes({**arrays, "a0": np.zeros(4 << 20)})  # 32 MiB of zeros
    path = write_model(tmp_path / "bomb.afm", meta, bomb, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    refused(path, "arrays.npz", "max_bytes", max_bytes=4 << 20)


def test_member_claiming_gigabytes_is_refused_before_reading(tmp_path, saved):
    """A small file whose index claims a 3 GiB arrays.npz (more than the default budget)."""
    path = tmp_path / "claim.afm"
    _patch_headers(22, 24, 3 << 30, size=4, member="arrays.npz")(path, saved[0])
    assert path.stat().st_size < 100_000
    refused(path, "arrays.npz", "max_bytes")


def test_member_lying_about_its_size_ends_at_its_claim(tmp_path, saved):
    """Declared 200 bytes, inflates to MiBs: zip stops at the claim and fails its CRC."""
    _, meta, arrays = saved
    bomb = npz_bytes({**arrays, "a0": np.zeros(1 << 20)})
    path = write_model(tmp_path / "lie.afm", meta, bomb, compression=zipfile.ZIP_DEFLATED)
    _patch_headers(22, 24, 200, size=4, member="arrays.npz")(path, path)
    refused(path)


def _many_members(n=12_000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            z.writestr(f"{i:0100d}", b"")
    return buf.getvalue()


def test_huge_zip_index_is_refused(tmp_path, saved):
    """Central directories of more than 1 MiB (about 10 000 members here) are not read."""
    path = tmp_path / "index.afm"
    path.write_bytes(_many_members())
    refused(path, "index", "the archive")
    _, meta, _ = saved
    path = write_model(tmp_path / "npz-index.afm", meta, _many_members())
    refused(path, "index", "arrays.npz")


def test_file_larger_than_the_budget_is_refused(tmp_path, saved):
    refused(saved[0], "max_bytes", max_bytes=1000)


def test_arrays_beyond_the_budget_are_refused(tmp_path, saved):
    _, meta, arrays = saved
    key = fitted_key(meta, "prototypes_")
    path = write_model(tmp_path / "big.afm", meta, {**arrays, key: np.zeros((3, 40_000))})
    refused(path, key + ".npy", "max_bytes", max_bytes=200_000)
    af.load(saved[0], max_bytes=200_000)  # the real model fits such a budget


def _npy_member(shape=(3, 1), descr="<f8", *, data=None, version=(1, 0), header=None):
    head = header if header is not None else npy_header(shape, descr, version)
    return head + (data if data is not None else b"")


NPY_TAMPERED = [
    ("header-claims-1e12-elements", _npy_member((10**12,)), ["a_key.npy", r"\(1000000000000,\)"]),
    ("object-dtype", _npy_member((3, 1), "|O", data=b"\0" * 24), ["a_key.npy", "dtype"]),
    ("structured-dtype", _npy_member((3,), [("x", "<f8")], data=b"\0" * 24), ["dtype"]),
    ("subarray-dtype", _npy_member((3,), ("<f8", (1,)), data=b"\0" * 24), ["dtype"]),
    ("datetime-dtype", _npy_member((3, 1), "<M8[s]", data=b"\0" * 24), ["dtype"]),
    ("void-dtype", _npy_member((3, 1), "|V8", data=b"\0" * 24), ["dtype"]),
    ("zero-itemsize", _npy_member((10**9,), "<U0"), ["dtype"]),
    ("negative-shape", _npy_member((-3, 1), data=b"\0" * 24), ["a_key.npy"]),
    ("not-npy", b"hello world" * 3, ["a_key.npy"]),
    ("npy-version-3", _npy_member(header=b"\x93NUMPY\x03\x00" + b"\0" * 8), ["a_key.npy"]),
    ("huge-header", _npy_member(header=b"\x93NUMPY\x02\x00" + (10**8).to_bytes(4, "little")),
     ["a_key.npy", "header"]),
    ("truncated-data", _npy_member(data=b"\0" * 16), ["a_key.npy"]),
    ("trailing-data", _npy_member(data=b"\0" * 32), ["a_key.npy"]),
    ("header-garbage", _npy_member(header=b"\x93NUMPY\x01\x00\x10\x00{'descr': 1, }  \n"),
     ["a_key.npy"]),
]  # fmt: skip


@pytest.mark.parametrize(("member", "names"), [pytest.param(*c[1:], id=c[0]) for c in NPY_TAMPERED])
def test_npy_headers_are_checked_before_reading(tmp_path, saved, member, names):
    _, meta, arrays = saved
    key = fitted_key(meta, "prototypes_")
    raw = npz_bytes({**{k: v for k, v in arrays.items() if k != key}, key: member})
    path = write_model(tmp_path / "npy.afm", meta, raw)
    refused(path, *(n.replace("a_key", key) for n in names))


def test_npz_members_must_match_the_references(tmp_path, saved):
    _, meta, arrays = saved
    extra = npz_bytes({**arrays, "evil": np.zeros(3)})
    refused(write_model(tmp_path / "x.afm", meta, extra), "evil.npy")
    key = fitted_key(meta, "prototypes_")
    fewer = npz_bytes({k: v for k, v in arrays.items() if k != key})
    refused(write_model(tmp_path / "y.afm", meta, fewer), key + ".npy")


def test_encrypted_npz_member_is_refused(tmp_path, saved):
    _, meta, arrays = saved
    inner = tmp_path / "inner.npz"
    inner.write_bytes(npz_bytes(arrays))
    _patch_headers(6, 8, 0x1, member="a0.npy")(inner, inner)
    refused(write_model(tmp_path / "e.afm", meta, inner.read_bytes()), "a0.npy", "encrypted")


# =========================================================================== bounded construction
GRID_30K = {"__type__": "GridGraph", "shape": {"__seq__": [30000, 30000], "tuple": True},
            "radius": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "names"),
    [
        pytest.param(GRID_30K, ["GridGraph", "max_bytes"], id="grid-30000x30000"),
        pytest.param({**GRID_30K, "radius": 10**6}, ["GridGraph"], id="grid-huge-radius"),
        pytest.param({**GRID_30K, "shape": "ab"}, ["GridGraph", "shape"], id="grid-shape-str"),
        pytest.param({**GRID_30K, "shape": {"__seq__": ["a", 10**9]}}, ["shape"], id="grid-str"),
        pytest.param({**GRID_30K, "radius": 10**40}, ["radius"], id="grid-radius-10e40"),
        pytest.param({**GRID_30K, "shape": {"__seq__": [2] * 40}}, ["shape"], id="grid-40-d"),
        pytest.param({**GRID_30K, "evil": 1}, ["evil"], id="grid-unknown-field"),
        pytest.param({"__component__": "graphs", "name": "grid",
                      "fields": {"shape": {"__seq__": [30000, 30000]}}}, ["graphs"],
                     id="grid-as-component"),
        pytest.param({"__type__": "GridGraph", "shape": {"__seq__": [2, 2], "tuple": True},
                      "radius": 1}, ["graph_"], id="grid-small-but-wrong"),
    ],
)  # fmt: skip
def test_objects_are_built_within_the_budget(tmp_path, saved_classifier, value, names):
    _, meta, arrays = saved_classifier
    meta = _set(*F, "graph_", value=value)(copy.deepcopy(meta))
    refused(write_model(tmp_path / "g.afm", meta, arrays), *names)


# =========================================================================== tampered meta.json
TAMPERED_META = [
    ("meta-is-list", lambda m: [m], ["meta.json"]),
    ("meta-is-string", lambda m: "assignflow-model", ["meta.json"]),
    ("format-missing", _set("format", value=DEL), ["meta.json"]),
    ("format-other", _set("format", value="keras"), ["meta.json"]),
    ("format_version-2", _set("format_version", value=2), ["format 2"]),
    ("format_version-str", _set("format_version", value="1"), ["format '1'"]),
    ("format_version-bool", _set("format_version", value=True), ["format True"]),
    ("format_version-float", _set("format_version", value=1.5), ["format 1.5"]),
    ("format_version-missing", _set("format_version", value=DEL), ["format None"]),
    ("class-unknown", _set("class", value="RandomForest"), ["RandomForest"]),
    ("class-int", _set("class", value=5), ["class 5"]),
    ("class-list", _set("class", value=["ImageLabeler"]), ["class"]),
    ("class-missing", _set("class", value=DEL), ["class None"]),
    ("class-dotted-path", _set("class", value="assignflow.estimators.ImageLabeler"), ["class"]),
    ("class-value-tag", _set("class", value="WeightPredictor"), ["WeightPredictor"]),
    ("params-missing", _set("params", value=DEL), ["params"]),
    ("params-string", _set("params", value="rho=0.1"), ["params"]),
    ("params-list", _set("params", value=[1, 2]), ["unexpected value"]),
    ("params-unknown-key", _set(*P, "evil", value=1), ["evil"]),
    ("param-rho-negative", _set(*P, "rho", value={"__float__": "-1.0"}), ["rho"]),
    ("param-rho-nan", _set(*P, "rho", value={"__float__": "nan"}), ["rho"]),
    ("param-rho-bad-float", _set(*P, "rho", value={"__float__": "abc"}), ["float"]),
    ("param-rho-float-not-str", _set(*P, "rho", value={"__float__": [1]}), ["float"]),
    ("param-rho-float-huge-str", _set(*P, "rho", value={"__float__": "1" * 10**6}), ["float"]),
    ("param-rho-raw-float", _set(*P, "rho", value=0.5), ["0.5"]),
    ("param-max_iter-str", _set(*P, "max_iter", value="100"), ["max_iter"]),
    ("param-integrator-typo", _set(*P, "integrator", value="exponential_krylv"),
     ["exponential_krylov"]),
    ("param-gradient-estimator-typo", _set(*P, "gradient_estimator", value="closed_form_lowrnk"),
     ["closed_form_low_rank"]),
    ("component-loss-typo", _set(*P, "integrator", value={"__component__": "losses",
                                                          "name": "kll", "fields": {}}), ["kll"]),
    ("component-unknown-registry", _set(*P, "integrator", value={"__component__": "modules",
                                                                 "name": "os", "fields": {}}),
     ["modules"]),
    ("component-fields-list", _set(*P, "integrator", value={"__component__": "integrators",
                                                            "name": "euler", "fields": [1]}),
     ["integrators"]),
    ("component-bad-field-value", _set(*P, "integrator", value={
        "__component__": "integrators", "name": "euler", "fields": {"step_size": "huge"}}),
     ["step_size"]),
    ("component-wrong-family", _set(*P, "integrator", value={"__component__": "losses",
                                                             "name": "tangent_space",
                                                             "fields": {}}), ["integrator"]),
    ("unknown-type", _set(*P, "integrator", value={"__type__": "Pipeline"}), ["Pipeline"]),
    ("seq-not-list", _set(*P, "integrator", value={"__seq__": 5}), ["__seq__"]),
    ("dict-not-dict", _set(*P, "integrator", value={"__dict__": 5}), ["__dict__"]),
    ("fitted-missing", _set("fitted", value=DEL), ["fitted"]),
    ("fitted-list", _set("fitted", value={"__seq__": [1]}), ["fitted"]),
    ("fitted-dunder-class", _set(*F, "__class__", value="x"), ["__class__"]),
    ("fitted-private", _set(*F, "_secret", value=1), ["_secret"]),
    ("fitted-no-underscore", _set(*F, "predict", value=1), ["predict"]),
    ("fitted-not-identifier", _set(*F, "a b_", value=1), ["a b_"]),
    ("fitted-drop-predictors", _set(*F, "predictors_", value=DEL), ["predictors_"]),
    ("fitted-predictors-str", _set(*F, "predictors_", value="p"), ["predictors_"]),
    ("fitted-predictors-list", _set(*F, "predictors_", "tuple", value=False), ["predictors_"]),
    ("fitted-predictors-empty", _set(*F, "predictors_", "__seq__", value=[]), ["predictors_"]),
    ("fitted-predictors-graph", _set(*F, "predictors_", "__seq__", 0, value={
        "__type__": "GridGraph", "shape": {"__seq__": [2, 2]}, "radius": 1}), ["predictors_"]),
    ("fitted-predictors-17-layers", lambda m: _set(*F, "predictors_", "__seq__",
        value=m["fitted"]["__dict__"]["predictors_"]["__seq__"][:1] * 17)(m), ["predictors_"]),
    ("fitted-predictors-mixed", _set(*F, "predictors_", "__seq__", 1, value={
        "__type__": "WeightPredictor", "prototypes": {"__array__": "a1"},
        "nu": {"__array__": "a1"}}), ["WeightPredictor"]),
    ("fitted-predictor-str", _set(*F, "predictor_", value="p"), ["predictor_"]),
    ("fitted-edge-wrong-name", _set(*F, "predictors_", "__seq__", 0, "name", value="prototype"),
     ["WeightPredictor"]),
    # as many groups as before (theta still matches), the first one reading column 99
    ("fitted-edge-groups-beyond-features", lambda meta: _set(*F, "predictors_", "__seq__", 0,
        "fields", "groups", value={"__seq__": [{"__seq__": [0, 99]}, *_groups(meta)[1:]]})(meta),
        [r"predictors_\[0\]"]),
    # the first layer reading the previous layer's assignment: the second layer's predictor
    ("fitted-edge-reads-no-assignment", lambda meta: _set(*F, "predictors_", "__seq__", 0,
        value=meta["fitted"]["__dict__"]["predictors_"]["__seq__"][1])(meta),
        [r"predictors_\[0\]"]),
    ("fitted-edge-groups-empty", _set(*F, "predictors_", "__seq__", 0, "fields", "groups",
        value={"__seq__": []}), ["groups|theta"]),
    ("fitted-edge-unknown-field", _set(*F, "predictors_", "__seq__", 0, "fields", "evil",
        value=1), ["evil"]),
    ("fitted-rho-missing", _set(*F, "rho_", value=DEL), ["rho_"]),
    ("fitted-T-float", _set(*F, "T_", value={"__float__": "1.0"}), ["T_"]),
    ("fitted-n_features-3", _set(*F, "n_features_in_", value=3), ["prototypes_"]),
    ("fitted-n_iter-negative", _set(*F, "n_iter_", value=-1), ["n_iter_"]),
    ("fitted-best_iter-float", _set(*F, "best_iter_", value={"__float__": "1.0"}), ["best_iter_"]),
    ("fitted-history-list", _set(*F, "history_", value={"__seq__": []}), ["history_"]),
    ("fitted-array-missing", _set(*F, "prototypes_", value={"__array__": "a999"}), ["a999"]),
    ("fitted-array-key-int", _set(*F, "prototypes_", value={"__array__": 0}), ["array 0"]),
    ("fitted-object-not-strings", _set(*F, "prototypes_", "object", value=True), ["strings"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "names"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_META]
)
def test_load_rejects_tampered_meta(tmp_path, saved, change, names):
    _, meta, arrays = saved
    meta = change(copy.deepcopy(meta))
    path = write_model(tmp_path / "t.afm", meta, arrays)
    refused(path, *names)


PROTO = ("predictors_", "__seq__", 0)
TAMPERED_PROTO_META = [
    ("sigma-negative", _set(*F, *PROTO, "sigma", value={"__float__": "-1"}), ["sigma"]),
    ("unknown-field", _set(*F, *PROTO, "evil", value=1), ["evil"]),
    ("missing-field", _set(*F, *PROTO, "nu", value=DEL), ["nu"]),
    ("radius-changed", _set(*F, "radius_", value=2), ["predictors_"]),
]


@pytest.mark.parametrize(
    ("change", "names"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_PROTO_META]
)
def test_load_rejects_tampered_prototype_predictor(tmp_path, saved_proto, change, names):
    _, meta, arrays = saved_proto
    refused(write_model(tmp_path / "t.afm", change(copy.deepcopy(meta)), arrays), *names)


def test_huge_json_integer_is_refused(tmp_path, saved):
    _, meta, arrays = saved
    text = json.dumps(meta).replace('"max_iter": 2', '"max_iter": ' + "9" * 5000)
    assert "9" * 5000 in text
    refused(write_model(tmp_path / "big-int.afm", text.encode(), arrays), "meta.json")


# =========================================================================== tampered arrays
def _replace(keys, fn):
    def change(meta, arrays):
        k = fitted_key(meta, *keys)
        return {**arrays, k: fn(arrays[k])}

    return change


TAMPERED_ARRAYS = [
    ("prototypes-nan", ["prototypes_"], lambda a: a * np.nan, ["prototypes_"]),
    ("prototypes-wrong-shape", ["prototypes_"], lambda a: a[:1], ["prototypes_"]),
    ("prototypes-strings", ["prototypes_"], lambda a: a.astype(str), ["prototypes_"]),
    ("prototypes-int", ["prototypes_"], lambda a: a.astype(int), ["prototypes_"]),
    ("prototypes-huge", ["prototypes_"], lambda a: a + 1e300, ["prototypes_"]),
    ("classes-2d", ["classes_"], lambda a: a[None], ["classes_"]),
    ("classes-empty", ["classes_"], lambda a: a[:0], ["classes_"]),
    ("classes-unsorted", ["classes_"], lambda a: a[::-1], ["classes_"]),
    ("classes-duplicate", ["classes_"], lambda a: np.r_[a[:1], a[:-1]], ["classes_"]),
    ("classes-nan", ["classes_"], lambda a: a * np.nan, ["classes_"]),
    ("classes-complex", ["classes_"], lambda a: a * 1j, ["classes_"]),
    ("rho-negative", ["rho_"], lambda a: -a, ["rho_"]),
    ("rho-per-layer", ["rho_"], lambda a: a[:1], ["rho_"]),
    ("T-zero", ["T_"], lambda a: 0 * a, ["T_"]),
    ("T-nan", ["T_"], lambda a: a * np.nan, ["T_"]),
    ("edge-bias-classes", [*PROTO, "fields", "bias"], lambda a: a[:4], [r"predictors_\[0\]"]),
    ("edge-theta-nan", [*PROTO, "fields", "theta"], lambda a: a * np.nan, ["theta"]),
    ("edge-scale-negative", [*PROTO, "fields", "scale"], lambda a: -a, ["scale"]),
    ("edge-theta-short", [*PROTO, "fields", "theta"], lambda a: a[:1], ["theta"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "fn", "names"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_ARRAYS]
)
def test_load_rejects_tampered_arrays(tmp_path, saved, keys, fn, names):
    _, meta, arrays = saved
    path = write_model(tmp_path / "t.afm", meta, _replace(keys, fn)(meta, arrays))
    refused(path, *names)


TAMPERED_PROTO_ARRAYS = [
    ("nu-nan", [*PROTO, "nu"], lambda a: a * np.nan, ["nu"]),
    ("nu-columns", [*PROTO, "nu"], lambda a: a[:, :4], [r"predictors_\[0\]"]),
    ("prototypes-complex", [*PROTO, "prototypes"], lambda a: a * 1j, ["prototypes"]),
    ("prototypes-columns", [*PROTO, "prototypes"], lambda a: a[:, :2], [r"predictors_\[0\]"]),
    ("prototypes-huge", [*PROTO, "prototypes"], lambda a: a + 1e160, [r"predictors_\[0\]"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "fn", "names"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_PROTO_ARRAYS]
)
def test_load_rejects_tampered_prototype_arrays(tmp_path, saved_proto, keys, fn, names):
    _, meta, arrays = saved_proto
    refused(write_model(tmp_path / "t.afm", meta, _replace(keys, fn)(meta, arrays)), *names)


TAMPERED_CLASSIFIER = [
    ("X-nan", ["X_"], lambda a: a * np.nan, ["X_"]),
    ("X-columns", ["X_"], lambda a: a[:, :1], ["X_"]),
    ("X-empty", ["X_"], lambda a: a[:0], ["X_"]),
    ("X-huge", ["X_"], lambda a: a + 1e300, ["X_"]),
    ("prototypes-huge", ["prototypes_"], lambda a: a + 1e300, ["prototypes_"]),
    ("y-out-of-range", ["y_"], lambda a: a + 5, ["y_"]),
    ("y-negative", ["y_"], lambda a: a - 1, ["y_"]),
    ("y-float", ["y_"], lambda a: a + 0.5, ["y_"]),
    ("y-short", ["y_"], lambda a: a[:-1], ["y_"]),
    ("weights-negative", ["weights_"], lambda a: -a, ["values"]),
    ("weights-short", ["weights_"], lambda a: a[:-1], ["values"]),
    ("weights-not-stochastic", ["weights_"], lambda a: 2 * a, ["row-stochastic"]),
    ("trust-short", ["trust_"], lambda a: a[:-1], ["trust_"]),
    ("trust-negative", ["trust_"], lambda a: -a, ["trust_"]),
    ("trust-zero", ["trust_"], lambda a: 0 * a, ["trust_"]),
    ("graph-indices", ["graph_", "indices"], lambda a: a * 0 + 999, ["indices"]),
    ("classes-unsorted", ["classes_"], lambda a: a[::-1], ["classes_"]),
    ("classes-duplicate", ["classes_"], lambda a: a * 0, ["classes_"]),
]


@pytest.mark.parametrize(
    ("keys", "fn", "names"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_CLASSIFIER]
)
def test_load_rejects_tampered_classifier(tmp_path, saved_classifier, keys, fn, names):
    _, meta, arrays = saved_classifier
    path = write_model(tmp_path / "c.afm", meta, _replace(keys, fn)(meta, arrays))
    refused(path, *names)


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        pytest.param("rho_", {"__float__": "-1.0"}, ["rho_"], id="rho-negative"),
        pytest.param("rho_", "1", ["rho_"], id="rho-str"),
        pytest.param("rho_", {"__float__": "1e308"}, ["rho_"], id="rho-overflows"),
        pytest.param("n_iter_", "1", ["n_iter_"], id="n_iter-str"),
        pytest.param("graph_", DEL, ["graph_"], id="graph-missing"),
        pytest.param("graph_", {"__type__": "Weights"}, ["Weights"], id="graph-incomplete"),
        pytest.param("history_", 5, ["history_"], id="history-int"),
    ],
)
def test_load_rejects_tampered_classifier_meta(tmp_path, saved_classifier, key, value, names):
    _, meta, arrays = saved_classifier
    meta = _set(*F, key, value=value)(copy.deepcopy(meta))
    refused(write_model(tmp_path / "c.afm", meta, arrays), *names)


def test_classifier_integrator_typo_fails_at_load(tmp_path, saved_classifier):
    _, meta, arrays = saved_classifier
    meta = _set(*P, "integrator", value="eulr")(copy.deepcopy(meta))
    refused(write_model(tmp_path / "c.afm", meta, arrays), "eulr")


# =========================================================================== mutation fuzzing
def _mutations(seed, n):
    """Byte-level mutations of whole files and structural ones of meta.json and arrays."""
    rng = np.random.default_rng(seed)
    values = [
        None,
        True,
        -1,
        0,
        3,
        10**6,
        "x",
        "euler",
        {"__float__": "nan"},
        {"__float__": "-1"},
        {"__float__": "1e308"},
        {"__seq__": [2, 2], "tuple": True},
        {"__dict__": {}},
        {"__array__": "a0"},
        {"__type__": "Graph"},
        {"__type__": "GridGraph", "shape": {"__seq__": [3, 3]}, "radius": 1},
        {"__component__": "losses", "name": "kl", "fields": {"labels": {"__array__": "a0"}}},
    ]
    for i in range(n):
        yield rng, values, i % 2 == 0


def _paths(x, path=()):
    if path:
        yield path
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items:
        yield from _paths(v, (*path, k))


def _mutate(rng, values, meta, arrays):
    meta, arrays = copy.deepcopy(meta), dict(arrays)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5 or not arrays:
            paths = [p for p in _paths(meta["fitted"], ("fitted",))]
            p = paths[int(rng.integers(len(paths)))]
            d = meta
            for k in p[:-1]:
                d = d[k]
            d[p[-1]] = copy.deepcopy(values[int(rng.integers(len(values)))])
        else:
            k = sorted(arrays)[int(rng.integers(len(arrays)))]
            a = arrays[k]
            fns = [lambda a: a[..., : max(0, a.shape[-1] - 1)] if a.ndim else a,
                   lambda a: a.reshape(-1), lambda a: np.asarray(a, dtype=np.float32),
                   lambda a: a * np.nan if a.dtype.kind == "f" else a[::-1],
                   lambda a: a + 1e300 if a.dtype.kind == "f" else a * 0,
                   lambda a: np.concatenate([a.ravel(), a.ravel()])]  # fmt: skip
            arrays[k] = fns[int(rng.integers(len(fns)))](a)
    return meta, arrays


@pytest.mark.parametrize("which", ["labeler", "classifier"])
def test_mutated_files_load_and_predict_or_fail_clearly(tmp_path, saved, saved_classifier, which):
    path, meta, arrays = saved if which == "labeler" else saved_classifier
    good = path.read_bytes()
    X = X8[:1] if which == "labeler" else TAB_X[:3]
    for rng, values, raw in _mutations(1 if which == "labeler" else 2, 120):
        target = tmp_path / "m.afm"
        if raw:  # 1 to 8 random bytes replaced
            data = bytearray(good)
            for k in rng.integers(0, len(data), size=int(rng.integers(1, 9))):
                data[k] = int(rng.integers(256))
            target.write_bytes(bytes(data))
        else:
            write_model(target, *_mutate(rng, values, meta, arrays))
        try:
            est = af.load(target)
        except ValueError as exc:
            assert "m.afm" in str(exc)
            continue
        est.predict(X)  # a model that loads predicts


# =========================================================================== code execution
class _TouchOnUnpickle:
    """Unpickling this object opens (creates) ``path`` -- a harmless, visible side effect."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_npy(marker) -> bytes:
    npy = io.BytesIO()
    np.save(npy, np.array([_TouchOnUnpickle(marker)], dtype=object), allow_pickle=True)
    return npy.getvalue()


def test_payloads_are_live(tmp_path):
    """Control: the payloads below really create their marker when unpickled."""
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    pickle.loads(pickle.dumps(_TouchOnUnpickle(m1)))
    assert m1.exists()
    with np.load(io.BytesIO(npz_bytes({"a0": _evil_npy(m2)})), allow_pickle=True) as f:
        f["a0"]
    assert m2.exists()


@pytest.mark.parametrize(
    "variant",
    ["pickle-as-arrays.npz", "object-array-in-npz", "pickle-as-meta.json", "pickle-beside"],
)
def test_load_never_unpickles(tmp_path, saved, variant):
    _, meta, arrays = saved
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_TouchOnUnpickle(marker))
    path = tmp_path / "e.afm"
    if variant == "pickle-as-arrays.npz":
        write_model(path, meta, payload)
    elif variant == "object-array-in-npz":
        key = fitted_key(meta, "prototypes_")
        m = _set(*F, "prototypes_", "object", value=True)(copy.deepcopy(meta))
        write_model(path, m, npz_bytes({**arrays, key: _evil_npy(marker)}))
    elif variant == "pickle-as-meta.json":
        write_model(path, payload, npz_bytes(arrays))
    else:
        write_model(path, meta, arrays, members={"model.pkl": payload})
    refused(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "name"),
    [
        pytest.param(_set("class", value="os.system"), "os.system", id="class-os.system"),
        pytest.param(_set("class", value="builtins.eval"), "builtins.eval",
                     id="class-builtins.eval"),
        pytest.param(_set("class", value="subprocess:Popen"), "subprocess:Popen",
                     id="class-entry-point-syntax"),
        pytest.param(_set(*P, "integrator", value={"__component__": "integrators",
                                                   "name": "os:system", "fields": {}}),
                     "os:system", id="component-os:system"),
        pytest.param(_set(*P, "integrator", value={"__component__": "integrators",
                                                   "name": "builtins.exec", "fields": {}}),
                     "builtins.exec", id="component-builtins.exec"),
        pytest.param(_set(*P, "integrator", value={"__type__": "os.system",
                                                   "command": "touch PWNED"}),
                     "os.system", id="type-os.system"),
    ],
)  # fmt: skip
def test_load_never_imports_named_code(tmp_path, saved, monkeypatch, change, name):
    _, meta, arrays = saved
    marker = tmp_path / "PWNED"
    monkeypatch.chdir(tmp_path)
    meta = change(copy.deepcopy(meta))
    # the parameters a code-executing loader would pass on
    meta["params"]["__dict__"]["command"] = f"touch {marker}"
    refused(write_model(tmp_path / "e.afm", meta, arrays), re.escape(name))
    assert not marker.exists()


# =========================================================================== versions
@pytest.mark.parametrize("version", ["0.0.1", "99.0", None], ids=["older", "newer", "missing"])
def test_version_mismatch_warns_and_still_loads(tmp_path, labeler, saved, version):
    _, meta, arrays = saved
    meta = copy.deepcopy(meta)
    meta["assignflow_version"] = version
    path = write_model(tmp_path / "v.afm", meta, arrays)
    with pytest.warns(UserWarning, match=re.escape(repr(version))):
        back = af.load(path)
    assert np.array_equal(back.predict_proba(X8), labeler.predict_proba(X8))


def test_same_version_does_not_warn(saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        af.load(saved[0])


def test_files_of_the_previous_layout_still_load(tmp_path, labeler, saved):
    """Files written before the protocol (same layout, deflated npz members) load."""
    _, meta, arrays = saved
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = write_model(tmp_path / "old.afm", meta, buf.getvalue(), compression=8)
    back = af.load(path)
    assert np.array_equal(back.predict_proba(X8), labeler.predict_proba(X8))
