"""Safety of ``assignflow.save``/``assignflow.load`` (issue 6).

Corrupt, truncated or tampered model files raise a ``ValueError`` naming the
problem (never an exception from inside zipfile/json/numpy), files crafted to run
code are refused without running it (proved with payloads that would create a
marker file), a version mismatch warns, and a round trip preserves predictions
exactly.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import assignflow as af

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X8, Y8 = af.datasets.make_voronoi("lines", 3, (8, 8), noise=0.2, random_state=0)
TAB_X = np.random.default_rng(0).normal(size=(30, 2))
TAB_Y = (TAB_X[:, 0] + 0.3 * TAB_X[:, 1] > 0).astype(int)


def tiny(**kw) -> af.ImageLabeler:
    params = dict(rho=0.1, T=1.0, max_iter=2, n_prototypes=3, random_state=0)
    params.update(kw)
    return af.ImageLabeler(**params)


@pytest.fixture(scope="module")
def labeler() -> af.ImageLabeler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny().fit(X8[:2], Y8[:2])


@pytest.fixture(scope="module")
def saved(labeler, tmp_path_factory):
    """Path, meta dict and the raw ``arrays.npz`` bytes of a good model file."""
    path = tmp_path_factory.mktemp("good") / "good.afm"
    af.save(labeler, path)
    with zipfile.ZipFile(path) as z:
        return path, json.loads(z.read("meta.json")), z.read("arrays.npz")


def write_model(path, meta=None, arrays=None, *, members=None):
    """Write a zip with the given ``meta`` (dict or raw bytes) and ``arrays`` bytes."""
    members = dict(members or {})
    if meta is not None:
        members["meta.json"] = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    if arrays is not None:
        members["arrays.npz"] = arrays
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_arrays(raw: bytes) -> dict:
    with np.load(io.BytesIO(raw), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# =========================================================================== round trips
def test_round_trip_image_labeler_exact(labeler, saved):
    back = af.load(saved[0])
    assert type(back) is af.ImageLabeler
    assert back.get_params() == labeler.get_params()
    np.testing.assert_array_equal(back.classes_, labeler.classes_)
    assert back.predictor_ == labeler.predictor_
    assert np.array_equal(back.predict_proba(X8[2:]), labeler.predict_proba(X8[2:]))
    assert np.array_equal(back.predict(X8), labeler.predict(X8))


@pytest.mark.parametrize("learn", [False, True], ids=["uniform-weights", "learned-weights"])
def test_round_trip_classifier_exact(tmp_path, learn):
    clf = af.AssignmentFlowClassifier(n_neighbors=5, learn_weights=learn, max_iter=2)
    clf.fit(TAB_X[:20], np.where(TAB_Y[:20] == 1, "pos", "neg"))
    af.save(clf, tmp_path / "c.afm")
    back = af.load(tmp_path / "c.afm")
    assert np.array_equal(back.predict_proba(TAB_X[20:]), clf.predict_proba(TAB_X[20:]))
    assert list(back.classes_) == ["neg", "pos"]
    assert np.array_equal(back.weights_, clf.weights_) and back.rho_ == clf.rho_


def test_round_trip_with_prototypes_string_classes_and_components(tmp_path):
    lab = tiny(
        prototypes=[[0.0], [1.0]],
        integrator=af.Euler(step_size=0.1),
        gradient_estimator=af.ClosedFormLowRank(rank=2),
    )
    lab.fit(X8[:2], np.where(Y8[:2] == 1, "cell", "line"))
    af.save(lab, tmp_path / "m.afm")
    back = af.load(tmp_path / "m.afm")
    assert back.integrator == af.Euler(step_size=0.1)
    assert back.gradient_estimator == af.ClosedFormLowRank(rank=2)
    assert np.array_equal(back.predict_proba(X8), lab.predict_proba(X8))
    assert set(np.unique(back.predict(X8))) <= {"cell", "line"}


@pytest.mark.parametrize("cls", [af.ImageLabeler, af.AssignmentFlowClassifier])
def test_round_trip_unfitted(tmp_path, cls):
    af.save(cls(), tmp_path / "u.afm")
    back = af.load(tmp_path / "u.afm")
    assert back.get_params() == cls().get_params()
    with pytest.raises(NotFittedError):
        back.predict(X8 if cls is af.ImageLabeler else TAB_X)


def test_save_does_not_change_the_estimator(labeler, tmp_path):
    before = labeler.predict_proba(X8)
    params = labeler.get_params()
    af.save(labeler, tmp_path / "again.afm")
    assert labeler.get_params() == params
    assert np.array_equal(labeler.predict_proba(X8), before)


# =========================================================================== save errors
@pytest.mark.parametrize(
    ("est", "path", "exc", "match"),
    [
        pytest.param(object(), "m.afm", TypeError, "estimator must be one of", id="not-estimator"),
        pytest.param("ImageLabeler", "m.afm", TypeError, "estimator must be one of", id="str"),
        pytest.param(tiny(), "nodir/m.afm", ValueError, "path: the directory", id="no-directory"),
        pytest.param(tiny(), 5, TypeError, "path must be a str or os.PathLike", id="path-int"),
        pytest.param(tiny(), None, TypeError, "path must be a str", id="path-None"),
        pytest.param(
            tiny(random_state=np.random.RandomState(0)),
            "m.afm",
            TypeError,
            "cannot save a value of type RandomState",
            id="unsaveable-param",
        ),
    ],
)
def test_save_rejects_bad_input(tmp_path, est, path, exc, match):
    target = str(tmp_path / path) if isinstance(path, str) else path
    with pytest.raises(exc, match=match):
        af.save(est, target)
    assert not (tmp_path / "m.afm").exists()


# =========================================================================== unreadable files
def _truncated(frac):
    def make(path, good, meta, arrays):
        data = good.read_bytes()
        path.write_bytes(data[: int(len(data) * frac)])

    return make


def _flipped(where):
    """Invert 8 bytes in the compressed data of a member, or in the central directory."""

    def make(path, good, meta, arrays):
        data = bytearray(good.read_bytes())
        with zipfile.ZipFile(good) as z:
            if where == "central-directory":
                k = data.rfind(b"PK\x01\x02")
            else:
                info = z.getinfo(where)
                name_len = int.from_bytes(
                    data[info.header_offset + 26 : info.header_offset + 28], "little"
                )
                extra_len = int.from_bytes(
                    data[info.header_offset + 28 : info.header_offset + 30], "little"
                )
                start = info.header_offset + 30 + name_len + extra_len
                k = start + info.compress_size // 2
        data[k : k + 8] = bytes(b ^ 0xFF for b in data[k : k + 8])
        path.write_bytes(bytes(data))

    return make


def _raw(content):
    def make(path, good, meta, arrays):
        path.write_bytes(content)

    return make


def _zip(members):
    def make(path, good, meta, arrays):
        m = {k: (v(meta, arrays) if callable(v) else v) for k, v in members.items()}
        write_model(path, members=m)

    return make


def _unsupported_compression(path, good, meta, arrays):
    write_model(path, meta, arrays)
    data = bytearray(path.read_bytes())
    # compression method (2 bytes) at offset 8 of every local header, 10 of the central one
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (k := data.find(sig, start)) >= 0:
            data[k + off : k + off + 2] = (99).to_bytes(2, "little")
            start = k + 4
    path.write_bytes(bytes(data))


UNREADABLE = [
    ("empty-file", _raw(b""), "not a readable assignflow model file"),
    ("text-file", _raw(b"not a model"), "not a readable assignflow model file"),
    ("truncated-10-bytes", _truncated(0.01), "not a readable"),
    ("truncated-quarter", _truncated(0.25), "not a readable"),
    ("truncated-half", _truncated(0.5), "not a readable"),
    ("truncated-last-bytes", _truncated(0.98), "not a readable"),
    ("corrupt-meta.json-data", _flipped("meta.json"), "not a readable"),
    ("corrupt-arrays.npz-data", _flipped("arrays.npz"), "not a readable"),
    ("corrupt-central-directory", _flipped("central-directory"), "not a readable"),
    ("pickle-file", _raw(pickle.dumps({"a": 1})), "not a readable"),
    ("missing-meta.json", _zip({"arrays.npz": lambda m, a: a}), "There is no item named 'meta"),
    ("missing-arrays.npz", _zip({"meta.json": lambda m, a: json.dumps(m)}), "arrays.npz"),
    ("empty-zip", _zip({}), "not a readable"),
    ("meta-not-json", _zip({"meta.json": b"{not json", "arrays.npz": b""}), "not a readable"),
    ("meta-not-utf8", _zip({"meta.json": b"\xff\xfe\x00", "arrays.npz": b""}), "not a readable"),
    ("meta-deeply-nested", _zip({"meta.json": b"[" * 200_000, "arrays.npz": b""}), "readable"),
    ("unsupported-compression", _unsupported_compression, "not a readable"),
]


@pytest.mark.parametrize(("make", "match"), [pytest.param(*c[1:], id=c[0]) for c in UNREADABLE])
def test_load_rejects_unreadable_files(tmp_path, saved, make, match):
    good, meta, arrays = saved
    path = tmp_path / "bad.afm"
    make(path, good, meta, arrays)
    with pytest.raises(ValueError, match=match):
        af.load(path)


@pytest.mark.parametrize(
    ("path", "exc", "match"),
    [
        pytest.param("missing.afm", FileNotFoundError, "missing.afm", id="missing"),
        pytest.param(".", ValueError, "not a readable", id="directory"),
        pytest.param(3, TypeError, "path must be a str or os.PathLike", id="int-file-descriptor"),
        pytest.param(None, TypeError, "path must be a str", id="None"),
        pytest.param(b"model.afm", TypeError, "path must be a str", id="bytes"),
    ],
)
def test_load_rejects_bad_paths(tmp_path, monkeypatch, path, exc, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=match):
        af.load(path)


# =========================================================================== tampered meta.json
def _set(*keys, value):
    """Return a function that sets ``meta[k0][k1]...`` (or deletes it for ``value=DEL``)."""

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

TAMPERED_META = [
    ("meta-is-list", lambda m: [m], "not an assignflow model file"),
    ("meta-is-string", lambda m: "assignflow-model", "not an assignflow model file"),
    ("format-missing", _set("format", value=DEL), "not an assignflow model file"),
    ("format-other", _set("format", value="keras"), "not an assignflow model file"),
    ("format_version-2", _set("format_version", value=2), "model file format 2 is not supported"),
    ("format_version-str", _set("format_version", value="1"), "model file format '1'"),
    ("format_version-bool", _set("format_version", value=True), "model file format True"),
    ("format_version-float", _set("format_version", value=1.5), "model file format 1.5"),
    ("format_version-missing", _set("format_version", value=DEL), "model file format None"),
    ("class-unknown", _set("class", value="RandomForest"), "unknown estimator class"),
    ("class-int", _set("class", value=5), "unknown estimator class 5"),
    ("class-list", _set("class", value=["ImageLabeler"]), "unknown estimator class"),
    ("class-missing", _set("class", value=DEL), "unknown estimator class None"),
    ("class-dotted-path", _set("class", value="assignflow.estimators.ImageLabeler"), "unknown"),
    ("params-missing", _set("params", value=DEL), "corrupt assignflow model file"),
    ("params-string", _set("params", value="rho=0.1"), "params and fitted must be dicts"),
    ("params-list", _set("params", value=[1, 2]), "unexpected value"),
    ("params-unknown-key", _set(*P, "evil", value=1), "unexpected keyword argument 'evil'"),
    ("param-rho-negative", _set(*P, "rho", value={"__float__": "-1.0"}), "rho must be > 0"),
    ("param-rho-nan", _set(*P, "rho", value={"__float__": "nan"}), "rho must be > 0"),
    ("param-rho-bad-float", _set(*P, "rho", value={"__float__": "abc"}), "could not convert"),
    ("param-rho-float-not-str", _set(*P, "rho", value={"__float__": [1]}), "bad float"),
    ("param-max_iter-str", _set(*P, "max_iter", value="100"), "max_iter must be an integer"),
    ("param-max_iter-bool", _set(*P, "max_iter", value=True), "max_iter must be an integer"),
    (
        "param-integrator-typo",
        _set(*P, "integrator", value="exponential_krylv"),
        "Did you mean 'exponential_krylov'",
    ),
    (
        "param-gradient-estimator-typo",
        _set(*P, "gradient_estimator", value="closed_form_lowrnk"),
        "Did you mean 'closed_form_low_rank'",
    ),
    (
        "component-loss-typo",
        # a built-in name: the suite must not depend on installed plugins
        _set(*P, "integrator", value={"__component__": "losses", "name": "kll",
                                      "fields": {}}),
        "Unknown loss 'kll'. Did you mean 'kl'",
    ),
    (
        "component-unknown-registry",
        _set(*P, "integrator", value={"__component__": "modules", "name": "os", "fields": {}}),
        "unknown registry 'modules'",
    ),
    (
        "component-fields-list",
        _set(*P, "integrator", value={"__component__": "integrators", "name": "euler",
                                      "fields": [1]}),
        "bad integrators entry",
    ),
    (
        "component-bad-field-value",
        _set(*P, "integrator", value={"__component__": "integrators", "name": "euler",
                                      "fields": {"step_size": "huge"}}),
        r"bad fields \['step_size'\] of integrators 'euler'",
    ),
    ("unknown-type", _set(*P, "integrator", value={"__type__": "Pipeline"}), "unknown entry"),
    ("fitted-missing", _set("fitted", value=DEL), "corrupt assignflow model file"),
    ("fitted-list", _set("fitted", value={"__seq__": [1]}), "params and fitted must be dicts"),
    ("fitted-dunder-class", _set(*F, "__class__", value="x"), "unexpected fitted attributes"),
    ("fitted-private", _set(*F, "_secret", value=1), "unexpected fitted attributes"),
    ("fitted-no-underscore", _set(*F, "predict", value=1), "unexpected fitted attributes"),
    ("fitted-drop-predictor", _set(*F, "predictor_", value=DEL), r"\['predictor_'\] are missing"),
    ("fitted-predictor-str", _set(*F, "predictor_", value="p"), "predictor_ must be a Weight"),
    ("fitted-n_features-3", _set(*F, "n_features_in_", value=3), r"prototypes_ must have shape"),
    ("fitted-n_iter-negative", _set(*F, "n_iter_", value=-1), "n_iter_ must be an integer >= 0"),
    ("fitted-history-list", _set(*F, "history_", value={"__seq__": []}), "history_ must be"),
    ("fitted-array-missing", _set(*F, "prototypes_", value={"__array__": "a999"}), "a999"),
    ("fitted-array-key-int", _set(*F, "prototypes_", value={"__array__": 0}), "missing"),
    ("fitted-predictor-bad-sigma", _set(*F, "predictor_", "sigma", value={"__float__": "-1"}),
     "sigma must be > 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_META]
)
def test_load_rejects_tampered_meta(tmp_path, saved, change, match):
    _, meta, arrays = saved
    path = write_model(tmp_path / "t.afm", change(copy.deepcopy(meta)), arrays)
    with pytest.raises(ValueError, match=match):
        af.load(path)


# =========================================================================== tampered arrays
def _array_key(meta, *keys):
    d = meta["fitted"]["__dict__"]
    for k in keys:
        d = d[k]
    return d["__array__"]


def _replace_array(keys, fn):
    def change(meta, raw):
        arrays = load_arrays(raw)
        k = _array_key(meta, *keys)
        arrays[k] = fn(arrays[k])
        return npz_bytes(**arrays)

    return change


def _drop_array(keys):
    def change(meta, raw):
        arrays = load_arrays(raw)
        del arrays[_array_key(meta, *keys)]
        return npz_bytes(**arrays)

    return change


TAMPERED_ARRAYS = [
    ("arrays-garbage", lambda m, r: b"\x00garbage" * 10, "corrupt assignflow model file"),
    ("arrays-empty", lambda m, r: b"", "corrupt assignflow model file"),
    ("arrays-truncated", lambda m, r: r[: len(r) // 2], "corrupt assignflow model file"),
    ("array-missing", _drop_array(["prototypes_"]), "is missing"),
    ("prototypes-nan", _replace_array(["prototypes_"], lambda a: a * np.nan),
     "prototypes_ must be finite"),
    ("prototypes-wrong-shape", _replace_array(["prototypes_"], lambda a: a[:1]),
     "prototypes_ must have shape"),
    ("prototypes-strings", _replace_array(["prototypes_"], lambda a: a.astype(str)), "prototypes_"),
    ("classes-2d", _replace_array(["classes_"], lambda a: a[None]), "classes_ must be a 1-d"),
    ("classes-empty", _replace_array(["classes_"], lambda a: a[:0]), "classes_|prototypes_"),
    ("predictor-nu-nan", _replace_array(["predictor_", "nu"], lambda a: a * np.nan), "nu must"),
    ("predictor-nu-columns", _replace_array(["predictor_", "nu"], lambda a: a[:, :4]),
     "predictor_ does not match"),
    ("predictor-prototypes-complex", _replace_array(["predictor_", "prototypes"],
                                                    lambda a: a * 1j), "prototypes must be real"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_ARRAYS]
)
def test_load_rejects_tampered_arrays(tmp_path, saved, change, match):
    _, meta, raw = saved
    path = write_model(tmp_path / "t.afm", meta, change(meta, raw))
    with pytest.raises(ValueError, match=match):
        af.load(path)


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    clf = af.AssignmentFlowClassifier(n_neighbors=4).fit(TAB_X, TAB_Y)
    path = tmp_path_factory.mktemp("clf") / "c.afm"
    af.save(clf, path)
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("meta.json")), z.read("arrays.npz")


TAMPERED_CLASSIFIER = [
    ("X-nan", ["X_"], lambda a: a * np.nan, "X_ must be finite"),
    ("X-columns", ["X_"], lambda a: a[:, :1], "prototypes_ must have shape|X_ must have"),
    ("y-out-of-range", ["y_"], lambda a: a + 5, r"y_ must hold 30 class indices in 0\.\.1"),
    ("y-float", ["y_"], lambda a: a + 0.5, "y_ must be a 1-d array"),
    ("weights-negative", ["weights_"], lambda a: -a, "must be > 0"),
    ("weights-short", ["weights_"], lambda a: a[:-1], "values"),
    ("trust-short", ["trust_"], lambda a: a[:-1], "trust_ must hold 30"),
    ("graph-indices", ["graph_", "indices"], lambda a: a * 0 + 999, "indices|graph"),
]


@pytest.mark.parametrize(
    ("keys", "fn", "match"), [pytest.param(*c[1:], id=c[0]) for c in TAMPERED_CLASSIFIER]
)
def test_load_rejects_tampered_classifier(tmp_path, saved_classifier, keys, fn, match):
    meta, raw = saved_classifier
    path = write_model(tmp_path / "c.afm", meta, _replace_array(keys, fn)(meta, raw))
    with pytest.raises(ValueError, match=match):
        af.load(path)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        pytest.param("rho_", {"__float__": "-1.0"}, "rho_ must be a finite float > 0", id="rho"),
        pytest.param("rho_", 1, "rho_ must be a finite float", id="rho-int"),
        pytest.param("n_iter_", "1", "n_iter_ must be an integer", id="n_iter-str"),
        pytest.param("graph_", {"__type__": "GridGraph", "shape": [2, 2], "radius": 1},
                     "graph_ must be a Graph on the 30", id="graph-wrong-size"),
        pytest.param("graph_", {"__type__": "GridGraph", "shape": "ab", "radius": 1},
                     "corrupt", id="graph-bad-shape"),
    ],
)  # fmt: skip
def test_load_rejects_tampered_classifier_meta(tmp_path, saved_classifier, key, value, match):
    meta, raw = saved_classifier
    meta = _set(*F, key, value=value)(copy.deepcopy(meta))
    with pytest.raises(ValueError, match=match):
        af.load(write_model(tmp_path / "c.afm", meta, raw))


# =========================================================================== code execution
class _TouchOnUnpickle:
    """Unpickling this object opens (creates) ``path`` -- a harmless, visible side effect."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_npy_npz(marker) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        npy = io.BytesIO()
        np.save(npy, np.array([_TouchOnUnpickle(marker)], dtype=object), allow_pickle=True)
        z.writestr("a0.npy", npy.getvalue())
    return buf.getvalue()


def test_payloads_are_live(tmp_path):
    """Control: the payloads below really create their marker when unpickled."""
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    pickle.loads(pickle.dumps(_TouchOnUnpickle(m1)))
    assert m1.exists()
    with np.load(io.BytesIO(_evil_npy_npz(m2)), allow_pickle=True) as f:
        f["a0"]
    assert m2.exists()


@pytest.mark.parametrize(
    "variant",
    ["pickle-as-arrays.npz", "object-array-in-npz", "pickle-as-meta.json", "pickle-beside"],
)
def test_load_never_unpickles(tmp_path, saved, variant):
    _, meta, raw = saved
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_TouchOnUnpickle(marker))
    if variant == "pickle-as-arrays.npz":
        path = write_model(tmp_path / "e.afm", meta, payload)
    elif variant == "object-array-in-npz":
        # meta points prototypes_ at the pickled object array
        m = _set(*F, "prototypes_", value={"__array__": "a0", "object": True})(copy.deepcopy(meta))
        path = write_model(tmp_path / "e.afm", m, _evil_npy_npz(marker))
    elif variant == "pickle-as-meta.json":
        path = write_model(tmp_path / "e.afm", payload, raw)
    else:
        path = write_model(tmp_path / "e.afm", meta, raw, members={"model.pkl": payload})
    if variant == "pickle-beside":
        af.load(path)  # extra members are ignored, never read
    else:
        with pytest.raises(ValueError, match="model file"):
            af.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param(_set("class", value="os.system"), "unknown estimator class 'os.system'",
                     id="class-os.system"),
        pytest.param(_set("class", value="builtins.eval"), "unknown estimator class",
                     id="class-builtins.eval"),
        pytest.param(_set("class", value="subprocess:Popen"), "unknown estimator class",
                     id="class-entry-point-syntax"),
        pytest.param(_set(*P, "integrator", value={"__component__": "integrators",
                                                   "name": "os:system", "fields": {}}),
                     "Unknown integrator 'os:system'", id="component-os:system"),
        pytest.param(_set(*P, "integrator", value={"__component__": "integrators",
                                                   "name": "builtins.exec", "fields": {}}),
                     "Unknown integrator", id="component-builtins.exec"),
        pytest.param(_set(*P, "integrator", value={"__type__": "os.system",
                                                   "command": "touch PWNED"}),
                     "unknown entry", id="type-os.system"),
    ],
)  # fmt: skip
def test_load_never_imports_named_code(tmp_path, saved, monkeypatch, change, match):
    _, meta, raw = saved
    marker = tmp_path / "PWNED"
    monkeypatch.chdir(tmp_path)
    meta = change(copy.deepcopy(meta))
    # the parameters a code-executing loader would pass on
    meta["params"]["__dict__"]["command"] = f"touch {marker}"
    with pytest.raises(ValueError, match=match):
        af.load(write_model(tmp_path / "e.afm", meta, raw))
    assert not marker.exists()


# =========================================================================== versions
@pytest.mark.parametrize("version", ["0.0.1", "99.0", None], ids=["older", "newer", "missing"])
def test_version_mismatch_warns_and_still_loads(tmp_path, labeler, saved, version):
    _, meta, raw = saved
    meta = copy.deepcopy(meta)
    meta["assignflow_version"] = version
    path = write_model(tmp_path / "v.afm", meta, raw)
    with pytest.warns(UserWarning, match=rf"saved with assignflow {version!r}.*this is "):
        back = af.load(path)
    assert np.array_equal(back.predict_proba(X8), labeler.predict_proba(X8))


def test_same_version_does_not_warn(saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        af.load(saved[0])
