"""Model files: saving and loading estimators without pickle, within bounded resources.

This module holds the file format and nothing else: it names no estimator and knows
no fitted attribute. Each persistable class states its own state through the small
protocol below, so a class that gains a fitted attribute needs no change here.

File format
-----------
A model file is a zip archive with exactly two members:

``meta.json``
    ``format`` (``"assignflow-model"``), ``format_version``, ``assignflow_version``,
    ``class`` (the estimator's persistence tag), ``params`` (``get_params(deep=False)``)
    and ``fitted`` (the fitted attributes), encoded as JSON values: ``None``, booleans,
    integers and strings as themselves; floats as ``{"__float__": repr}`` (exact, and
    ``inf``/``nan`` survive); arrays as ``{"__array__": key}``; lists and tuples as
    ``{"__seq__": [...], "tuple": bool}``; dicts as ``{"__dict__": {...}}``; objects of
    persistable classes as ``{"__type__": tag, **state}``; registered components
    (integrators, gradient estimators, losses, predictors) as ``{"__component__":
    family, "name": registry name, "fields": {...}}``, and registered component classes
    given as parameters as ``{"__component__": family, "name": name, "class": true}``.
``arrays.npz``
    every array, one ``<key>.npy`` member each (no object arrays).

The persistence protocol
------------------------
A class becomes persistable with the class decorator :func:`persistable`, which
records it under a *tag* in this module's own table (the file names that tag;
nothing is ever imported by name). Generic defaults state the state:

* **attrs value classes** (graphs, weights, predictors): the constructor arguments of
  their attrs fields (or the ``fields`` given to the decorator); rebuilt with
  ``cls(**fields)``, so the attrs converters and validators check them.
* **scikit-learn estimators**: ``get_params(deep=False)`` and every public attribute
  ending in ``_`` (scikit-learn's convention for fitted attributes). Loading rebuilds
  ``cls(**params)``; the estimator validates its parameters itself with
  ``_validate_params()`` (scikit-learn's ``_parameter_constraints`` protocol; a class
  may define its own ``_validate_params``); then the fitted attributes are set, a
  ``classes_`` attribute must be sorted without duplicates (the scikit-learn
  classifier convention, as :func:`numpy.unique` produces it), and the class hook
  ``_check_fitted_state(self)`` validates the fitted attributes, so a tampered file
  fails at load, never at predict. :func:`check_fitted_array` and
  :func:`check_fitted_int` help writing that hook.
* **components given as parameters** need no decorator: attrs classes registered in
  the families ``integrators``, ``gradient_estimators``, ``losses`` and ``predictors``
  of :mod:`assignflow.registry` are stored by registry name and fields. Graphs are not
  components in model files: a graph is data, saved through its persistable encoding.

Why this protocol (and not ``skops.io`` or ``cattrs``)
------------------------------------------------------
``skops.io`` stores any object's ``__dict__``/``__getstate__`` and rebuilds types
looked up by module path from a trusted-type list: it imports by name, validates
nothing about the rebuilt state (a tampered ``prototypes_`` loads and fails, or
silently mispredicts, later), bounds neither member sizes nor what constructors
allocate, and adds a dependency. ``cattrs`` (un)structures attrs classes well, but the
estimators are plain scikit-learn classes, arrays need custom hooks anyway, and the
container and its resource bounds remain to be written. The protocol above is a few
dozen lines, keeps the zip(JSON + npz) format of earlier versions (their files still
load), executes no code from the file, and puts each class in charge of its own
state and its validation.

Resource policy for model files
-------------------------------
A model file may come from anywhere, so :func:`load` treats it as untrusted input
and bounds every resource *before* spending it. What is bounded, by what, and why:

* **File type** -- only regular files are opened: a FIFO would block forever,
  ``/dev/zero`` never ends, a directory is not a model. Checked with ``stat`` before
  opening (no device is ever opened) and again on the opened descriptor (no race).
* **File size** -- at most ``max_bytes`` + 1 MiB (zip overhead). This bounds the I/O
  and the decompression work of everything below.
* **Zip indexes** -- the end record and central directory of the archive and of the
  npz are read through a reader that refuses more than 1 MiB each, so an index
  claiming millions of members is refused before it is parsed.
* **Members** -- exactly ``meta.json`` and ``arrays.npz``, and inside the npz exactly
  the ``.npy`` arrays that ``meta.json`` refers to; unknown, missing or duplicate
  members, encryption and compression methods other than stored/deflated are refused.
* **Declared sizes, before reading** -- ``meta.json`` at most 1 MiB
  (:data:`MAX_META_BYTES`; real ones hold one or two kilobytes, the arrays live in the
  npz), ``arrays.npz`` at most ``max_bytes`` + 1 MiB. zip stops inflating at the
  declared size and checks the CRC, so a zip bomb ends at its claim.
* **Arrays, before reading their data** -- each ``.npy`` header (at most 10 000
  bytes) is parsed first: the dtype must be a plain number, boolean or string type
  (never an object), and ``shape × itemsize`` must equal the member's size and fit
  the remaining budget (a header claiming 10¹² elements is refused, not allocated).
* **A total budget** ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, 1 GiB) is
  charged with the parsed ``meta.json`` (32 bytes per byte of JSON, the measured worst
  case of Python objects), all array data, and what constructors are declared to
  allocate beyond their arrays (``nbytes`` of :func:`persistable`: a
  :class:`~assignflow.GridGraph` is stored as its shape and declares its index arrays,
  so a file naming a 30000×30000 grid is refused before anything is built). Only the
  classes of the :func:`persistable` table and of the component families are built.
  Pass a larger ``max_bytes`` to load a larger model you trust.
* **Peak memory and time** -- about twice the array bytes (the constructors that
  validate graphs and weights copy them once) plus ``arrays.npz`` inflated once into a
  temporary file (in memory up to 64 MiB, on disk beyond). Measured: a classifier
  with 78 MiB of arrays (200 000 training rows) loads in 2 s with a peak of 171 MiB;
  a 1 MiB ``meta.json`` of worst-case JSON in 0.4 s and 15 MiB.
* **Nothing executes** -- no pickle (``allow_pickle`` is never enabled), no import by
  name (classes come from the :func:`persistable` table, components from the
  registries, plugins only as installed entry points); deep JSON nesting, numbers of
  thousands of digits and floats of more than 64 characters end in errors.

Every failure ends in one :class:`ValueError` that names the file (a missing file is
a :class:`FileNotFoundError`, a ``path`` of the wrong type a :class:`TypeError`).
Plain ``pickle`` also works for every estimator, for trusted files only.
"""

from __future__ import annotations

import io
import json
import numbers
import os
import re
import secrets
import shutil
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np
from sklearn.base import BaseEstimator

from . import registry
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_VERSION",
    "MAX_META_BYTES",
    "check_fitted_array",
    "check_fitted_int",
    "load",
    "persistable",
    "save",
]

#: Version of the file layout; files of other versions are refused.
FORMAT_VERSION = 1
#: Default total budget of :func:`load`: meta.json + array data + declared allocations.
DEFAULT_MAX_BYTES = 1 << 30
#: Largest accepted ``meta.json`` (real ones hold a few kilobytes: arrays live in the npz).
MAX_META_BYTES = 1 << 20
#: Memory of parsed and decoded JSON per byte of ``meta.json`` (measured worst case ~30).
_JSON_OVERHEAD = 32

_FORMAT = "assignflow-model"
_MEMBERS = ("meta.json", "arrays.npz")
#: Zip overhead tolerated on top of ``max_bytes`` (local headers, npy headers, index).
_SLACK = 1 << 20
#: Bytes a zip index (end record + central directory) may take when read.
_MAX_INDEX_BYTES = 1 << 20
#: Largest ``.npy`` header (numpy's own default limit).
_MAX_NPY_HEADER = 10_000
_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_ARRAY_KINDS = "biufcU"
#: Registry families whose attrs classes are stored as components (name + fields).
_COMPONENT_FAMILIES = ("integrators", "gradient_estimators", "losses", "predictors")
_FITTED_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*_")
_CHUNK = 1 << 24
#: arrays.npz is inflated once into a temporary file, in memory up to this size.
_SPOOL = 64 << 20


# =========================================================================== the protocol
@attrs.frozen
class _Spec:
    cls: type
    tag: str
    estimator: bool
    fields: tuple[tuple[str, str], ...]  # (attribute, constructor argument)
    nbytes: Callable[..., Any] | None


_BY_TAG: dict[str, _Spec] = {}
_BY_CLASS: dict[type, _Spec] = {}


def persistable(
    tag: str,
    *,
    fields: Iterable[str] | None = None,
    nbytes: Callable[..., Any] | None = None,
) -> Callable[[type], type]:
    """Class decorator: instances of the class can be written to and read from model files.

    Parameters
    ----------
    tag : str
        The name of the class in model files (stable across versions: changing it
        makes old files unreadable).
    fields : iterable of str, optional
        Only for attrs classes: the attributes that make up the state, passed back to
        the constructor by name. Default: the attrs fields of the class (their
        constructor names). A scikit-learn estimator's state is always its
        parameters and fitted attributes.
    nbytes : callable, optional
        ``nbytes(**fields) -> int``: the bytes the constructor allocates beyond the
        arrays in the fields (e.g. a grid graph stored as its shape). :func:`load`
        charges it to its budget before building the object. It receives numbers or
        short tuples of numbers only (other field values are refused first).

    Returns
    -------
    callable
        The decorator; it returns the class unchanged.
    """
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"tag must be a non-empty str, got {tag!r}")

    def decorator(cls: type) -> type:
        estimator = hasattr(cls, "get_params")
        if not estimator and not attrs.has(cls):
            raise TypeError(f"{cls.__name__} must be an attrs class or a scikit-learn estimator")
        if estimator and (fields is not None or nbytes is not None):
            raise TypeError("fields and nbytes apply to attrs classes, not to estimators")
        if estimator:
            pairs: tuple[tuple[str, str], ...] = ()
        elif fields is None:
            pairs = tuple((f.name, f.alias) for f in attrs.fields(cls) if f.init)
        else:
            pairs = tuple((name, name) for name in fields)
        old = _BY_TAG.get(tag)
        if old is not None and _qualname(old.cls) != _qualname(cls):
            raise ValueError(f"tag {tag!r} is already used by {_qualname(old.cls)}")
        if old is not None:  # the same class, re-imported (importlib.reload)
            _BY_CLASS.pop(old.cls, None)
        spec = _Spec(cls, tag, estimator, pairs, nbytes)
        _BY_TAG[tag] = spec
        _BY_CLASS[cls] = spec
        return cls

    return decorator


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def check_fitted_array(
    value: Any,
    name: str,
    *,
    ndim: int | None = None,
    shape: tuple[int | None, ...] | None = None,
    kinds: str = "f",
    max_abs: float | None = None,
) -> np.ndarray:
    """Check a fitted attribute read from a model file: an array of the expected form.

    For ``_check_fitted_state`` hooks. Float arrays must be finite.

    Parameters
    ----------
    value : object
        The attribute's value.
    name : str
        The attribute's name (used in the message).
    ndim : int, optional
        Required number of dimensions (implied by ``shape``).
    shape : tuple of int or None, optional
        Required shape; ``None`` entries are free.
    kinds : str, default="f"
        Accepted dtype kinds (``numpy.dtype.kind``), e.g. ``"iu"`` for integers.
    max_abs : float, optional
        Largest accepted magnitude of the values (e.g. where squares would overflow).

    Returns
    -------
    ndarray
        ``value`` itself.
    """
    if shape is not None:
        ndim = len(shape)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
        raise ValueError(f"{name} must be an array of dtype kind {kinds!r}, got {_kind(value)}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {value.shape}")
    if shape is not None and any(
        s is not None and s != a for s, a in zip(shape, value.shape, strict=True)
    ):
        want = str(tuple("*" if s is None else s for s in shape)).replace("'", "")
        raise ValueError(f"{name} must have shape {want}, got {value.shape}")
    if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite")
    if max_abs is not None and value.size and float(np.abs(value).max()) > max_abs:
        raise ValueError(f"{name} has values of magnitude > {max_abs:g}")
    return value


def check_fitted_int(value: Any, name: str, *, minimum: int = 0) -> int:
    """Check a fitted attribute read from a model file: an integer ``>= minimum``.

    Parameters
    ----------
    value : object
        The attribute's value.
    name : str
        The attribute's name (used in the message).
    minimum : int, default=0
        Smallest accepted value.

    Returns
    -------
    int
        ``value`` itself.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__


def _check_classes(classes: Any) -> None:
    """scikit-learn's convention: ``classes_`` is sorted and has no duplicates."""
    check_fitted_array(classes, "classes_", ndim=1, kinds="biufUO")
    if classes.size < 1:
        raise ValueError("classes_ must not be empty")
    if classes.dtype.kind == "O" and not all(isinstance(c, str) for c in classes):
        raise ValueError("classes_ must hold numbers or strings")
    if not np.all(classes[1:] > classes[:-1]):
        raise ValueError("classes_ must be sorted and without duplicates (as numpy.unique gives)")


# =========================================================================== encoding
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, a: np.ndarray, where: str) -> dict:
        key = f"a{len(self.arrays)}"
        if a.dtype == object:
            if not all(isinstance(v, str) for v in a.ravel()):
                raise TypeError(f"cannot save {where}: an object array that does not hold strings")
            self.arrays[key] = a.astype(str)
            return {"__array__": key, "object": True}
        if a.dtype.kind not in _ARRAY_KINDS or a.dtype.fields is not None:
            raise TypeError(f"cannot save {where}: an array of dtype {a.dtype}")
        self.arrays[key] = a
        return {"__array__": key}

    def encode(self, x: Any, where: str) -> Any:
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, np.bool_):
            return bool(x)
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, (float, np.floating)):
            return {"__float__": repr(float(x))}
        if isinstance(x, np.ndarray):
            return self.array(x, where)
        if isinstance(x, (list, tuple)):
            seq = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(x)]
            return {"__seq__": seq, "tuple": isinstance(x, tuple)}
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise TypeError(f"cannot save {where}: a dict with non-string keys")
            return {"__dict__": {k: self.encode(v, f"{where}[{k!r}]") for k, v in x.items()}}
        spec = _BY_CLASS.get(type(x))
        if spec is not None:
            return {"__type__": spec.tag, **self.state(spec, x, where)}
        if isinstance(x, type):  # a registered component class given as a parameter
            for family in _COMPONENT_FAMILIES:
                reg = getattr(registry, family, None)
                name = reg.name_of(x) if reg is not None else None
                if name is not None:
                    return {"__component__": family, "name": name, "class": True}
        if attrs.has(type(x)):
            for family in _COMPONENT_FAMILIES:
                reg = getattr(registry, family, None)
                name = reg.name_of(x) if reg is not None else None
                if name is not None:
                    fields = {
                        f.alias: self.encode(getattr(x, f.name), f"{where}.{f.name}")
                        for f in attrs.fields(type(x))
                        if f.init
                    }
                    return {"__component__": family, "name": name, "fields": fields}
        raise TypeError(
            f"cannot save {where}, a value of type {type(x).__name__}: model files hold numbers, "
            "strings, arrays, lists, dicts, registered components and persistable objects "
            "(pass e.g. an int random_state or a registry name)"
        )

    def state(self, spec: _Spec, x: Any, where: str) -> dict:
        if spec.estimator:
            params, fitted = _estimator_state(x)
            return {
                "params": self.encode(params, f"{where}params" if where else "params"),
                "fitted": self.encode(fitted, f"{where}fitted" if where else "fitted"),
            }
        return {arg: self.encode(getattr(x, attr), f"{where}.{attr}") for attr, arg in spec.fields}


def _estimator_state(est: Any) -> tuple[dict, dict]:
    fitted = {k: v for k, v in vars(est).items() if _FITTED_NAME.fullmatch(k)}
    return est.get_params(deep=False), fitted


def _check_path(path: Any) -> str:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike of str, got {type(path).__name__}")
    return path


def _estimator_tags() -> list[str]:
    return sorted(s.tag for s in _BY_TAG.values() if s.estimator)


def save(estimator: Any, path: str | os.PathLike) -> None:
    """Write an assignflow estimator, fitted or not, to ``path`` (a zip archive).

    Parameters go to JSON, fitted arrays to ``.npz``; nothing is pickled. The file is
    written to a temporary name in the same directory and renamed into place, so a
    failed save never leaves a truncated file (nor destroys an existing one).

    Parameters
    ----------
    estimator : estimator
        An instance of a persistable estimator class (see :func:`persistable`).
    path : str or os.PathLike
        The file to write (replaced if it exists). Its directory must exist.

    Raises
    ------
    TypeError
        For objects that are not persistable estimators, or unsaveable values (e.g. a
        ``RandomState`` as ``random_state``); the message says where the value sits.
    ValueError
        When the directory of ``path`` does not exist, or when the JSON part would
        exceed :data:`MAX_META_BYTES` (large values belong in arrays).

    Warns
    -----
    UserWarning
        When the arrays exceed the default budget of :func:`load` (the message gives
        the ``max_bytes`` to load the file with).
    """
    spec = _BY_CLASS.get(type(estimator))
    if spec is None or not spec.estimator:
        raise TypeError(
            f"estimator must be one of {_estimator_tags()}, got {type(estimator).__name__}"
        )
    path = _check_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"path: the directory {directory!r} does not exist")
    enc = _Encoder()
    state = enc.state(spec, estimator, "")
    meta = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "assignflow_version": __version__,
        "class": spec.tag,
        **state,
    }
    text = json.dumps(meta, indent=1)
    if len(text.encode()) > MAX_META_BYTES:  # load would refuse the file
        raise ValueError(
            f"estimator: its parameters and fitted attributes take {len(text.encode()):,} bytes "
            f"of JSON, more than the {MAX_META_BYTES:,} load accepts; pass large values as "
            "numpy arrays (they go to arrays.npz), not as lists"
        )
    n_array_bytes = sum(a.nbytes for a in enc.arrays.values())
    needed = n_array_bytes + _JSON_OVERHEAD * len(text.encode()) + _SLACK
    if n_array_bytes > DEFAULT_MAX_BYTES:
        warnings.warn(
            f"the model holds {_size(n_array_bytes)} of arrays, more than load's default "
            f"budget: load it with load(path, max_bytes={needed})",
            UserWarning,
            stacklevel=2,
        )
    buf = io.BytesIO()
    np.savez(buf, **enc.arrays)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("meta.json", text)
            z.writestr("arrays.npz", buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# =========================================================================== loading
class _NotReadable(Exception):
    """The container is not a model file or breaks a resource limit."""


class _TooLarge(Exception):
    """The model needs more than ``max_bytes``."""


class _Corrupt(Exception):
    """The content is corrupt or tampered with."""


#: Errors of reading and building that mean "corrupt or tampered file".
_CORRUPT = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    RecursionError,
    EOFError,
    OSError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
)


class _Budget:
    def __init__(self, max_bytes: int) -> None:
        self.max = max_bytes
        self.left = max_bytes

    def charge(self, n: int, what: str) -> None:
        if n > self.left:
            raise _TooLarge(
                f"{what} needs {_size(n)}, more than the {_size(self.left)} left of "
                f"max_bytes={self.max}"
            )
        self.left -= n


def _size(n: int) -> str:
    for unit, k in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:,.1f} {unit}"
    return f"{n} bytes"


class _IndexReader:
    """A file wrapper that refuses to read more than ``limit`` bytes in total.

    Used while :class:`zipfile.ZipFile` parses an archive's end record and central
    directory (then ``limit`` is set to ``None``): a directory claiming millions of
    members is refused before it is read.
    """

    def __init__(self, f: Any, limit: int | None, where: str) -> None:
        self._f = f
        self.limit = limit
        self.where = where
        self.count = 0

    def read(self, n: int | None = -1) -> bytes:
        if self.limit is None:
            return self._f.read(n)
        allowed = self.limit - self.count
        if n is not None and n > allowed:  # refused without reading
            raise _NotReadable(f"the zip index of {self.where} exceeds {_size(self.limit)}")
        data = self._f.read(allowed + 1 if n is None or n < 0 else n)
        if len(data) > allowed:
            raise _NotReadable(f"the zip index of {self.where} exceeds {_size(self.limit)}")
        self.count += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True


def _open_zip(f: Any, where: str) -> zipfile.ZipFile:
    reader = _IndexReader(f, _MAX_INDEX_BYTES, where)
    z = zipfile.ZipFile(reader)
    reader.limit = None
    return z


def _check_members(z: zipfile.ZipFile, expected: Iterable[str], where: str) -> dict:
    """The members of ``z`` by name: exactly ``expected``, plain and unencrypted."""
    infos = z.infolist()
    names = [i.filename for i in infos]
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise _NotReadable(f"{where} holds duplicate members {dup}")
    expected = set(expected)
    unknown = sorted(set(names) - expected)
    if unknown:
        raise _NotReadable(f"{where} holds unknown members {unknown}")
    missing = sorted(expected - set(names))
    if missing:
        raise _NotReadable(f"{where} lacks the members {missing}")
    for info in infos:
        if info.flag_bits & 0x1:
            raise _NotReadable(f"{where} member {info.filename!r} is encrypted")
        if info.compress_type not in _COMPRESSION:
            raise _NotReadable(
                f"{where} member {info.filename!r} uses compression method "
                f"{info.compress_type} (only stored and deflated members are read)"
            )
    return {i.filename: i for i in infos}


def _read_exactly(f: Any, n: int, what: str) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    pos = 0
    while pos < n:
        chunk = f.read(min(_CHUNK, n - pos))
        if not chunk:
            raise ValueError(f"{what} is truncated")
        view[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    return buf


def _read_npy(f: Any, info: zipfile.ZipInfo, budget: _Budget) -> np.ndarray:
    """One ``.npy`` member: header parsed and checked before the data is read."""
    head = f.read(8)
    version = tuple(head[6:8])
    if len(head) < 8 or head[:6] != b"\x93NUMPY" or version not in ((1, 0), (2, 0)):
        raise ValueError("not a .npy array of format 1.0 or 2.0")
    len_size = 2 if version == (1, 0) else 4
    raw_len = f.read(len_size)
    if len(raw_len) < len_size:
        raise ValueError("truncated header")
    header_len = int.from_bytes(raw_len, "little")
    if header_len > _MAX_NPY_HEADER:
        raise ValueError(f"a {header_len}-byte header (more than {_MAX_NPY_HEADER})")
    header = f.read(header_len)
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(io.BytesIO(raw_len + header))
    if (
        dtype.hasobject
        or dtype.kind not in _ARRAY_KINDS
        or dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.itemsize == 0
    ):
        raise ValueError(f"dtype {dtype} is not a plain number, boolean or string type")
    if any(s < 0 for s in shape):
        raise ValueError(f"negative shape {shape}")
    count = 1
    for s in shape:  # Python integers: no overflow
        count *= s
    nbytes = count * dtype.itemsize
    if 8 + len_size + header_len + nbytes != info.file_size:
        raise ValueError(
            f"the header claims shape {shape} of {dtype} ({nbytes:,} bytes of data) in a "
            f"member of {info.file_size:,} bytes"
        )
    budget.charge(nbytes, f"array {info.filename} {shape} of {dtype}")
    data = _read_exactly(f, nbytes, "the data")
    if f.read(1):  # also makes zipfile check the member's CRC
        raise ValueError("the data is longer than its header says")
    a = np.frombuffer(data, dtype=dtype, count=count) if count else np.zeros(0, dtype)
    return a.reshape(shape, order="F" if fortran else "C")


def _array_refs(meta: Any) -> set[str]:
    """Keys of every ``{"__array__": key}`` in the JSON (iteratively: no recursion)."""
    refs, stack = set(), [meta]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            key = x.get("__array__")
            if isinstance(key, str):
                refs.add(key)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return refs


def _read_arrays(z: zipfile.ZipFile, info: zipfile.ZipInfo, refs: set, budget: _Budget) -> dict:
    if info.file_size > budget.max + _SLACK:
        raise _TooLarge(f"arrays.npz holds {_size(info.file_size)}")
    arrays = {}
    # inflated once (zip stops at the declared size and checks the CRC), so that the
    # npz index and members are read with free seeks instead of re-inflating
    with z.open(info) as outer, tempfile.SpooledTemporaryFile(_SPOOL) as spool:
        shutil.copyfileobj(outer, spool, _CHUNK)
        spool.seek(0)
        try:
            npz = _open_zip(spool, "arrays.npz")
        except zipfile.BadZipFile as exc:
            raise ValueError(f"arrays.npz is not an npz archive ({exc})") from None
        with npz:
            members = _check_members(npz, (k + ".npy" for k in refs), "arrays.npz")
            for m in sorted(members.values(), key=lambda i: i.header_offset):
                with npz.open(m) as f:
                    try:
                        arrays[m.filename[: -len(".npy")]] = _read_npy(f, m, budget)
                    except (ValueError, TypeError, SyntaxError, EOFError) as exc:
                        raise ValueError(f"arrays.npz member {m.filename!r}: {exc}") from None
    return arrays


class _Decoder:
    def __init__(self, arrays: dict, budget: _Budget) -> None:
        self.arrays = arrays
        self.budget = budget

    def decode(self, x: Any) -> Any:
        if x is None or isinstance(x, (bool, str, int)):
            return x
        if not isinstance(x, dict):
            raise ValueError(f"unexpected value {_short(x)}")
        if "__float__" in x:
            s = x["__float__"]
            if not isinstance(s, str) or len(s) > 64:
                raise ValueError(f"bad float {_short(s)}")
            return float(s)
        if "__array__" in x:
            key = x["__array__"]
            if not isinstance(key, str) or key not in self.arrays:
                raise ValueError(f"array {_short(key)} is missing")
            a = self.arrays[key]
            if x.get("object"):
                if a.dtype.kind != "U":
                    raise ValueError(f"array {key!r} must hold strings")
                return a.astype(object)
            return a
        if "__seq__" in x:
            if not isinstance(x["__seq__"], list):
                raise ValueError("__seq__ must be a list")
            seq = [self.decode(v) for v in x["__seq__"]]
            return tuple(seq) if x.get("tuple") else seq
        if "__dict__" in x:
            if not isinstance(x["__dict__"], dict):
                raise ValueError("__dict__ must be an object")
            return {k: self.decode(v) for k, v in x["__dict__"].items()}
        if "__type__" in x:
            tag = x["__type__"]
            spec = _BY_TAG.get(tag) if isinstance(tag, str) else None
            if spec is None:
                raise ValueError(f"unknown entry type {_short(tag)}")
            state = {k: v for k, v in x.items() if k != "__type__"}
            return self.build(spec, state)
        if "__component__" in x:
            return self.component(x)
        raise ValueError(f"unknown entry {sorted(x)[:5]}")

    def component(self, x: dict) -> Any:
        # only registered components: a name is looked up, never imported
        family, name, fields = x["__component__"], x.get("name"), x.get("fields")
        if not isinstance(family, str) or family not in _COMPONENT_FAMILIES:
            raise ValueError(f"unknown registry {_short(family)}")
        reg = getattr(registry, family, None)
        if reg is None:
            raise ValueError(f"unknown registry {family!r}")
        if not isinstance(name, str):
            raise ValueError(f"bad {family} entry {_short(x)}")
        if x.get("class") is True and set(x) == {"__component__", "name", "class"}:
            cls = reg.get(name)
            if not isinstance(cls, type):
                raise ValueError(f"{family} entry {name!r} is not a class")
            return cls
        if not isinstance(fields, dict) or set(x) != {"__component__", "name", "fields"}:
            raise ValueError(f"bad {family} entry {_short(x)}")
        cls = reg.get(name)
        if not (isinstance(cls, type) and attrs.has(cls)):
            raise ValueError(f"{family} entry {name!r} is not an attrs class")
        spec = _BY_CLASS.get(cls)
        if spec is not None:
            return self.build(spec, fields)
        values = {k: self.decode(v) for k, v in fields.items()}
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad fields {sorted(values)} of {family} {name!r}: {exc}") from None

    def build(self, spec: _Spec, state: dict) -> Any:
        if spec.estimator:
            if set(state) != {"params", "fitted"}:
                raise ValueError(f"{spec.tag} entry must hold params and fitted")
            return self.estimator(spec, state["params"], state["fitted"])
        known = {arg for _, arg in spec.fields}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(f"unknown fields {unknown[:5]} of {spec.tag}")
        values = {k: self.decode(v) for k, v in state.items()}
        if spec.nbytes is not None:
            bad = sorted(k for k, v in values.items() if not _small_numbers(v))
            if bad:
                raise ValueError(f"fields {bad} of {spec.tag} must be numbers")
            n = spec.nbytes(**values)
            if not isinstance(n, numbers.Real) or not n >= 0:
                raise ValueError(f"bad fields {sorted(values)} of {spec.tag}")
            self.budget.charge(int(n), f"{spec.tag} {_short(values)}")
        try:
            return spec.cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad fields {sorted(values)} of {spec.tag}: {exc}") from None

    def estimator(self, spec: _Spec, params: Any, fitted: Any) -> Any:
        params, fitted = self.decode(params), self.decode(fitted)
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise ValueError("params and fitted must be dicts")
        bad = sorted(k for k in fitted if not _FITTED_NAME.fullmatch(k))
        if bad:
            raise ValueError(f"unexpected fitted attributes {bad[:5]}")
        est = spec.cls(**params)
        # scikit-learn's protocol: _validate_params checks _parameter_constraints; a
        # class without constraints may define its own _validate_params
        validate = getattr(type(est), "_validate_params", None)
        if validate is not None and (
            hasattr(est, "_parameter_constraints") or validate is not BaseEstimator._validate_params
        ):
            est._validate_params()
        if not fitted:
            return est
        for k, v in fitted.items():
            setattr(est, k, v)
        if "classes_" in fitted:
            _check_classes(fitted["classes_"])
        hook = getattr(est, "_check_fitted_state", None)
        if hook is not None:
            try:
                hook()
            except AttributeError as exc:
                if getattr(exc, "obj", None) is not est or not exc.name:
                    raise
                raise ValueError(f"the fitted attribute {exc.name!r} is missing") from None
        return est


def _small_numbers(v: Any) -> bool:
    """Numbers of at most 64 bits, or tuples/lists of at most 32 of them."""
    if isinstance(v, (list, tuple)):
        return len(v) <= 32 and all(
            not isinstance(e, (list, tuple)) and _small_numbers(e) for e in v
        )
    if isinstance(v, int):
        return abs(v) < 1 << 63
    return isinstance(v, float)


def _short(x: Any) -> str:
    r = repr(x)
    return r if len(r) <= 80 else r[:77] + "..."


def _open_regular(path: str) -> Any:
    """Open ``path`` for reading only if it is a regular file (checked before and after)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _NotReadable(str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise _NotReadable(f"it is not a regular file ({_file_kind(st.st_mode)})")
    flags = os.O_RDONLY
    for extra in ("O_BINARY", "O_NONBLOCK", "O_NOCTTY"):
        flags |= getattr(os, extra, 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _NotReadable(str(exc)) from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):  # replaced between stat and open
        f.close()
        raise _NotReadable(f"it is not a regular file ({_file_kind(st.st_mode)})")
    return f, st.st_size


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


def _read_meta(z: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Any:
    if info.file_size > MAX_META_BYTES:
        raise _NotReadable(
            f"meta.json holds {info.file_size:,} bytes, more than the limit of "
            f"{MAX_META_BYTES:,} bytes ({_size(MAX_META_BYTES)}) of model files"
        )
    budget.charge(_JSON_OVERHEAD * info.file_size, "meta.json (parsed)")
    with z.open(info) as f:
        raw = f.read(MAX_META_BYTES + 1)
    if len(raw) > MAX_META_BYTES:  # pragma: no cover - zipfile stops at the declared size
        raise _NotReadable("meta.json is larger than declared")
    return json.loads(raw.decode("utf-8"))


def _check_header(meta: Any) -> _Spec:
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _NotReadable("meta.json does not describe an assignflow model file")
    fv = meta.get("format_version")
    if isinstance(fv, bool) or fv != FORMAT_VERSION:
        raise _NotReadable(
            f"model file format {_short(fv)} is not supported by this version "
            f"(expects {FORMAT_VERSION})"
        )
    tag = meta.get("class")
    spec = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if spec is None or not spec.estimator:
        # a fixed table: class names are never imported
        raise _NotReadable(
            f"it names an unknown estimator class {_short(tag)} (known: {_estimator_tags()})"
        )
    return spec


def load(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Read an estimator written by :func:`save`, within bounded time and memory.

    The file is untrusted input: nothing in it is executed, and every size is checked
    before it is read or built (see the resource policy of :mod:`assignflow.persistence`).
    Parameters and fitted attributes are validated by the estimator's class, so a
    loaded model either predicts or fails here.

    Parameters
    ----------
    path : str or os.PathLike
        A regular file written by :func:`save`.
    max_bytes : int, default=DEFAULT_MAX_BYTES
        Budget of the load, in bytes (default 1 GiB): the file's size, ``meta.json``
        plus all array data plus what constructors declare to allocate must fit in
        it. Raise it to load larger models you trust.

    Returns
    -------
    estimator
        The estimator, fitted if it was saved fitted.

    Raises
    ------
    ValueError
        Naming the file, for anything that is not an intact assignflow model within
        the limits: non-regular files (FIFOs, devices, directories), files that are
        not zip archives or are truncated, corrupt, encrypted or tampered with,
        unknown or missing members, sizes beyond the limits, unsupported format
        versions, unknown classes and invalid parameters or fitted attributes.
    FileNotFoundError
        If ``path`` does not exist.
    TypeError
        If ``path`` is not a str or os.PathLike, or ``max_bytes`` not an integer.

    Warns
    -----
    UserWarning
        When the file was written by another assignflow version.
    """
    path = _check_path(path)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral):
        raise TypeError(f"max_bytes must be an integer, got {type(max_bytes).__name__}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    budget = _Budget(int(max_bytes))
    try:
        f, size = _open_regular(path)
        with f:
            if size > budget.max + _SLACK:
                raise _TooLarge(f"the file holds {_size(size)}")
            with _open_zip(f, "the archive") as z:
                members = _check_members(z, _MEMBERS, "the archive")
                try:
                    meta = _read_meta(z, members["meta.json"], budget)
                except (ValueError, RecursionError) as exc:  # JSON, UTF-8
                    raise _NotReadable(f"meta.json is not valid JSON ({exc})") from None
                spec = _check_header(meta)
                if meta.get("assignflow_version") != __version__:
                    warnings.warn(
                        f"model was saved with assignflow {meta.get('assignflow_version')!r}, "
                        f"this is {__version__}; check its predictions",
                        UserWarning,
                        stacklevel=2,
                    )
                try:
                    arrays = _read_arrays(z, members["arrays.npz"], _array_refs(meta), budget)
                    missing = sorted(k for k in ("params", "fitted") if k not in meta)
                    if missing:
                        raise ValueError(f"meta.json lacks {missing}")
                    dec = _Decoder(arrays, budget)
                    return dec.estimator(spec, meta["params"], meta["fitted"])
                except (_NotReadable, _TooLarge):
                    raise
                except _CORRUPT as exc:
                    raise _Corrupt(str(exc)) from None
    except FileNotFoundError:
        raise
    except _Corrupt as exc:
        raise ValueError(f"corrupt assignflow model file {path!r}: {exc}") from None
    except _TooLarge as exc:
        raise ValueError(
            f"model file {path!r} is too large to load: {exc}; pass a larger max_bytes to "
            "load(..., max_bytes=...) if you trust it"
        ) from None
    except _NotReadable as exc:
        raise ValueError(f"{path!r} is not a readable assignflow model file: {exc}") from None
    except _CORRUPT as exc:
        raise ValueError(f"{path!r} is not a readable assignflow model file ({exc})") from None
