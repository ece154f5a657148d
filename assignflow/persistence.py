"""Saving and loading fitted estimators without pickle.

A model file is a zip archive holding

``meta.json``
    format version, assignflow version, the estimator's class, its parameters
    (``get_params``) and the fitted attributes, as JSON; arrays are referenced by
    key.
``arrays.npz``
    every array, read back with ``allow_pickle=False``.

Loading never executes code from the file: classes are looked up in a fixed
table of assignflow's estimators and value objects, and components given as
objects (integrators, gradient estimators, losses) are stored by their
registry name and attrs fields. A file written by another assignflow version
loads with a warning. Plain ``pickle`` also works for every estimator.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
import zlib
from typing import Any

import attrs
import numpy as np

from ._version import __version__

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 1


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, a: np.ndarray) -> dict:
        key = f"a{len(self.arrays)}"
        if a.dtype == object:
            if not all(isinstance(v, str) for v in a.ravel()):
                raise TypeError("cannot save an object array that does not hold strings")
            self.arrays[key] = a.astype(str)
            return {"__array__": key, "object": True}
        if a.dtype.kind not in "biufcU?":
            raise TypeError(f"cannot save an array of dtype {a.dtype}")
        self.arrays[key] = a
        return {"__array__": key}

    def encode(self, x: Any) -> Any:
        from . import registry
        from .graphs import Graph, GridGraph
        from .predictor import WeightPredictor
        from .weights import Weights

        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, (float, np.floating)):
            return {"__float__": repr(float(x))}  # exact, and inf/nan survive JSON
        if isinstance(x, np.ndarray):
            return self.array(x)
        if isinstance(x, (list, tuple)):
            return {"__seq__": [self.encode(v) for v in x], "tuple": isinstance(x, tuple)}
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise TypeError("cannot save a dict with non-string keys")
            return {"__dict__": {k: self.encode(v) for k, v in x.items()}}
        if isinstance(x, GridGraph):
            return {"__type__": "GridGraph", "shape": list(x.shape), "radius": x.radius}
        if isinstance(x, Graph):
            return {
                "__type__": "Graph",
                "indptr": self.array(x.indptr),
                "indices": self.array(x.indices),
            }
        if isinstance(x, Weights):
            return {
                "__type__": "Weights",
                "graph": self.encode(x.graph),
                "values": self.array(x.values),
            }
        if isinstance(x, WeightPredictor):
            return {
                "__type__": "WeightPredictor",
                "prototypes": self.array(x.prototypes),
                "nu": self.array(x.nu),
                "sigma": self.encode(x.sigma),
            }
        if attrs.has(type(x)):
            for kind, reg in registry.all_registries().items():
                name = reg.name_of(x)
                if name is not None:
                    fields = {
                        f.name: self.encode(getattr(x, f.name)) for f in attrs.fields(type(x))
                    }
                    return {"__component__": kind, "name": name, "fields": fields}
        raise TypeError(
            f"cannot save a value of type {type(x).__name__}: use registry names or registered "
            "components for estimator parameters"
        )


class _Decoder:
    def __init__(self, arrays: Any) -> None:
        self.arrays = arrays

    def decode(self, x: Any) -> Any:
        from . import registry
        from .graphs import Graph, GridGraph
        from .predictor import WeightPredictor
        from .weights import Weights

        if x is None or isinstance(x, (bool, str, int)):
            return x
        if not isinstance(x, dict):
            raise ValueError(f"corrupt model file: unexpected value {x!r}")
        if "__float__" in x:
            if not isinstance(x["__float__"], str):
                raise ValueError(f"corrupt model file: bad float {x['__float__']!r}")
            return float(x["__float__"])
        if "__array__" in x:
            if not isinstance(x["__array__"], str) or x["__array__"] not in self.arrays:
                raise ValueError(f"corrupt model file: array {x['__array__']!r} is missing")
            a = self.arrays[x["__array__"]]
            return a.astype(object) if x.get("object") else a
        if "__seq__" in x:
            seq = [self.decode(v) for v in x["__seq__"]]
            return tuple(seq) if x.get("tuple") else seq
        if "__dict__" in x:
            return {k: self.decode(v) for k, v in x["__dict__"].items()}
        t = x.get("__type__")
        if t == "GridGraph":
            return GridGraph(tuple(x["shape"]), x["radius"])
        if t == "Graph":
            return Graph(self.decode(x["indptr"]), self.decode(x["indices"]))
        if t == "Weights":
            return Weights(self.decode(x["graph"]), self.decode(x["values"]))
        if t == "WeightPredictor":
            return WeightPredictor(
                self.decode(x["prototypes"]), self.decode(x["nu"]), self.decode(x["sigma"])
            )
        if "__component__" in x:
            # only registered components: a name is looked up, never imported
            kind, name = x["__component__"], x.get("name")
            reg = registry.all_registries().get(kind) if isinstance(kind, str) else None
            if reg is None:
                raise ValueError(f"corrupt model file: unknown registry {kind!r}")
            if not isinstance(name, str) or not isinstance(x.get("fields"), dict):
                raise ValueError(f"corrupt model file: bad {kind} entry {x!r}")
            cls = reg.get(name)
            fields = {k: self.decode(v) for k, v in x["fields"].items()}
            try:
                return cls(**fields)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"bad fields {sorted(fields)} of {kind} {name!r}: {exc}") from None
        raise ValueError(f"corrupt model file: unknown entry {sorted(x)}")


def _estimator_classes() -> dict[str, type]:
    from .estimators import ImageLabeler

    classes: dict[str, type] = {"ImageLabeler": ImageLabeler}
    try:
        from .classifier import AssignmentFlowClassifier

        classes["AssignmentFlowClassifier"] = AssignmentFlowClassifier
    except ImportError:  # pragma: no cover - older layouts
        pass
    return classes


def _check_path(path: Any) -> str:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


#: Fitted attributes every fitted model file must hold.
_REQUIRED = {
    "ImageLabeler": (
        "classes_",
        "prototypes_",
        "predictor_",
        "predictors_",
        "rho_",
        "T_",
        "n_features_in_",
        "history_",
        "n_iter_",
        "best_iter_",
    ),
    "AssignmentFlowClassifier": (
        "classes_",
        "X_",
        "y_",
        "prototypes_",
        "rho_",
        "graph_",
        "weights_",
        "trust_",
        "n_iter_",
        "history_",
        "n_features_in_",
    ),
}


def _check_state(est: Any, fitted: dict) -> None:
    """Validate parameters and fitted attributes, so a tampered file fails at load."""
    from .graphs import Graph
    from .predictor import WeightPredictor
    from .weights import Weights

    name = type(est).__name__
    est._validate_params()
    if not fitted:
        return  # an unfitted estimator
    missing = [k for k in _REQUIRED[name] if k not in fitted]
    if missing:
        raise ValueError(f"fitted attributes {missing} are missing")

    def arr(key, ndim, kinds="f"):
        a = fitted[key]
        if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype.kind not in kinds:
            raise ValueError(f"{key} must be a {ndim}-d array of kind {kinds!r}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"{key} must be finite")
        return a

    def integer(key, low):
        v = fitted[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {v!r}")
        return v

    classes = arr("classes_", 1, "biuUO")
    J = len(classes)
    if J < 1:
        raise ValueError("classes_ must not be empty")
    c = integer("n_features_in_", 1)
    protos = arr("prototypes_", 2)
    if protos.shape != (J, c):
        raise ValueError(f"prototypes_ must have shape ({J}, {c}), got {protos.shape}")
    integer("n_iter_", 0)
    if name == "ImageLabeler":
        from .predictors import Predictor

        integer("best_iter_", 0)
        preds = fitted["predictors_"]
        if not isinstance(preds, tuple) or not all(isinstance(p, Predictor) for p in preds):
            raise ValueError("predictors_ must be a tuple of Predictors")
        for key in ("rho_", "T_"):
            v = arr(key, 1)
            if v.shape != (len(preds),) or np.any(v <= 0):
                raise ValueError(f"{key} must hold one positive value per layer")
        for p in preds:
            if isinstance(p, WeightPredictor) and p.window_size != (2 * est.radius + 1) ** 2:
                raise ValueError("predictors_ do not match the radius")
        if not isinstance(fitted["history_"], dict):
            raise ValueError("history_ must be a dict")
        return
    X = arr("X_", 2)
    n = X.shape[0]
    if X.shape[1] != c:
        raise ValueError(f"X_ must have {c} columns, got {X.shape}")
    y = arr("y_", 1, "iu")
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= J)):
        raise ValueError(f"y_ must hold {n} class indices in 0..{J - 1}")
    rho = fitted["rho_"]
    if isinstance(rho, bool) or not isinstance(rho, float) or not (np.isfinite(rho) and rho > 0):
        raise ValueError(f"rho_ must be a finite float > 0, got {rho!r}")
    g = fitted["graph_"]
    if not isinstance(g, Graph) or g.n_nodes != n:
        raise ValueError(f"graph_ must be a Graph on the {n} training rows")
    Weights(g, arr("weights_", 1))  # validates shape, positivity, row sums
    trust = arr("trust_", 1)
    if trust.shape != (n,) or np.any(trust < 0):
        raise ValueError(f"trust_ must hold {n} values >= 0")
    if fitted["history_"] is not None and not isinstance(fitted["history_"], dict):
        raise ValueError("history_ must be a dict or None")


def save(estimator: Any, path: str | os.PathLike) -> None:
    """Write a fitted (or unfitted) assignflow estimator to ``path`` (a zip archive).

    Parameters go to JSON, fitted arrays to ``.npz``; nothing is pickled. Raises
    ``TypeError`` for other objects or unsaveable parameters and ``ValueError`` when
    the directory of ``path`` does not exist.
    """
    name = type(estimator).__name__
    if _estimator_classes().get(name) is not type(estimator):
        raise TypeError(f"estimator must be one of {sorted(_estimator_classes())}, got {name}")
    path = _check_path(path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(
            f"path: the directory {os.path.dirname(os.path.abspath(path))!r} does not exist"
        )
    enc = _Encoder()
    fitted = {k: v for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_")}
    meta = {
        "format": "assignflow-model",
        "format_version": FORMAT_VERSION,
        "assignflow_version": __version__,
        "class": name,
        "params": enc.encode(estimator.get_params(deep=False)),
        "fitted": enc.encode(fitted),
    }
    buf = io.BytesIO()
    np.savez(buf, **enc.arrays)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.json", json.dumps(meta, indent=1))
        z.writestr("arrays.npz", buf.getvalue())


def load(path: str | os.PathLike) -> Any:
    """Read an estimator written by :func:`save`.

    Raises ``ValueError`` for files that are not assignflow models or are corrupt,
    truncated or tampered with (parameters and fitted attributes are validated, so a
    loaded model either predicts or fails here), ``FileNotFoundError`` for a missing
    file and ``TypeError`` for a ``path`` that is not a str or path; warns
    (``UserWarning``) when the file comes from another assignflow version. Never
    unpickles and never imports: class and component names are looked up in fixed
    tables and the registries.
    """
    path = _check_path(path)
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json").decode("utf-8"))
            raw = z.read("arrays.npz")
    except FileNotFoundError:
        raise
    except (
        zipfile.BadZipFile,
        KeyError,
        UnicodeDecodeError,
        ValueError,  # json.JSONDecodeError and bad zip headers
        OSError,
        EOFError,
        zlib.error,
        NotImplementedError,  # unsupported compression method
        RecursionError,  # absurdly nested JSON
    ) as exc:
        raise ValueError(f"{path!r} is not a readable assignflow model file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "assignflow-model":
        raise ValueError(f"{path!r} is not an assignflow model file")
    fv = meta.get("format_version")
    if isinstance(fv, bool) or fv != FORMAT_VERSION:
        raise ValueError(
            f"model file format {fv!r} is not supported by this version (expects {FORMAT_VERSION})"
        )
    if meta.get("assignflow_version") != __version__:
        warnings.warn(
            f"model was saved with assignflow {meta.get('assignflow_version')!r}, this is "
            f"{__version__}; check its predictions",
            UserWarning,
            stacklevel=2,
        )
    name = meta.get("class")
    # a fixed table: class names are never imported
    cls = _estimator_classes().get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"model file names an unknown estimator class {name!r}")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        dec = _Decoder(arrays)
        params = dec.decode(meta["params"])
        fitted = dec.decode(meta["fitted"])
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise ValueError("params and fitted must be dicts")
        bad = [k for k in fitted if not (k.endswith("_") and not k.startswith("_"))]
        if bad:
            raise ValueError(f"unexpected fitted attributes {bad}")
        est = cls(**params)
        for k, v in fitted.items():
            setattr(est, k, v)
        _check_state(est, fitted)
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OverflowError,
        RecursionError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        zlib.error,
        NotImplementedError,
    ) as exc:
        raise ValueError(f"corrupt assignflow model file {path!r}: {exc}") from None
    return est
