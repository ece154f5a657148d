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
            return float(x["__float__"])
        if "__array__" in x:
            if x["__array__"] not in self.arrays:
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
            reg = registry.all_registries().get(x["__component__"])
            if reg is None:
                raise ValueError(f"corrupt model file: unknown registry {x['__component__']!r}")
            cls = reg.get(x["name"])
            return cls(**{k: self.decode(v) for k, v in x["fields"].items()})
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


def save(estimator: Any, path: str | os.PathLike) -> None:
    """Write a fitted (or unfitted) assignflow estimator to ``path`` (a zip archive).

    Parameters go to JSON, fitted arrays to ``.npz``; nothing is pickled.
    """
    name = type(estimator).__name__
    if _estimator_classes().get(name) is not type(estimator):
        raise TypeError(
            f"estimator must be one of {sorted(_estimator_classes())}, got {name}"
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

    Raises ``ValueError`` for files that are not assignflow models or are corrupt
    or truncated; warns (``UserWarning``) when the file comes from another
    assignflow version. Never unpickles.
    """
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
        json.JSONDecodeError,
        OSError,
        EOFError,
    ) as exc:
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable assignflow model file ({exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != "assignflow-model":
        raise ValueError(f"{os.fspath(path)!r} is not an assignflow model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"model file format {meta.get('format_version')!r} is not supported by this version "
            f"(expects {FORMAT_VERSION})"
        )
    if meta.get("assignflow_version") != __version__:
        warnings.warn(
            f"model was saved with assignflow {meta.get('assignflow_version')}, this is "
            f"{__version__}; check its predictions",
            UserWarning,
            stacklevel=2,
        )
    cls = _estimator_classes().get(meta.get("class"))
    if cls is None:
        raise ValueError(f"model file names an unknown estimator class {meta.get('class')!r}")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        dec = _Decoder(arrays)
        est = cls(**dec.decode(meta["params"]))
        for k, v in dec.decode(meta["fitted"]).items():
            setattr(est, k, v)
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"corrupt assignflow model file {os.fspath(path)!r}: {exc}") from None
    return est
