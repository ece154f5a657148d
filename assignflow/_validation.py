"""Input checks shared by the public classes.

Every public entry point validates what users pass and raises a ``ValueError`` or
``TypeError`` that names the argument and says what was expected; the private
kernels behind them assume valid input and do not check again.
"""

from __future__ import annotations

import numbers
from typing import Any

import attrs
import numpy as np

__all__ = [
    "as_float_array",
    "check_finite_float",
    "check_nonnegative_float",
    "check_positive_float",
    "check_positive_int",
    "nonnegative_float_converter",
    "positive_float_converter",
]

# dtype kinds that are never numbers here: bool, complex, strings, bytes, void, datetimes
_NOT_REAL_KINDS = {
    "b": "booleans",
    "c": "complex numbers",
    "U": "strings",
    "S": "bytes",
    "V": "raw records",
    "M": "datetimes",
    "m": "timedeltas",
}


def as_float_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    shape: tuple[int | None, ...] | None = None,
    finite: bool = True,
    copy: bool = False,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Convert ``x`` to a float array and check its shape and values.

    ``shape`` may hold ``None`` for free axes. ``copy=False`` avoids a copy when
    ``x`` already has the right dtype; callers never write into the result then.
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
    # look at the dtype before converting: numpy would silently parse "1.5", drop the
    # imaginary part of complex input and turn booleans into 0/1
    given = getattr(x, "dtype", None)
    if not isinstance(given, np.dtype):
        try:
            given = np.asarray(x).dtype
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of real numbers ({exc})") from None
    if given.kind in _NOT_REAL_KINDS:
        raise TypeError(
            f"{name} must be an array of real numbers, got {_NOT_REAL_KINDS[given.kind]} "
            f"(dtype {given})"
        )
    if given.kind == "O":
        bad = [v for v in np.asarray(x, dtype=object).flat if not _is_real_scalar(v)][:1]
        if bad:
            bad = bad[0]
            raise TypeError(
                f"{name} must be an array of real numbers, got an element {bad!r} "
                f"of type {type(bad).__name__}"
            )
    try:
        arr = np.array(x, dtype=dtype, copy=True) if copy else np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers ({exc})") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape, strict=False)
        ):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if finite and arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return arr


def _is_real_scalar(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (numbers.Real, np.floating, np.integer))


def _check_real(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def check_finite_float(x: Any, name: str) -> float:
    """Return ``float(x)`` after checking it is a finite real number (not a bool)."""
    return _check_real(x, name)


def check_positive_float(x: Any, name: str) -> float:
    """Return ``float(x)`` after checking it is a finite number ``> 0``."""
    x = _check_real(x, name)
    if x <= 0:
        raise ValueError(f"{name} must be > 0, got {x}")
    return x


def check_nonnegative_float(x: Any, name: str) -> float:
    """Return ``float(x)`` after checking it is a finite number ``>= 0``."""
    x = _check_real(x, name)
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {x}")
    return x


def check_positive_int(x: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``int(x)`` after checking it is an integer ``>= minimum``."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__}")
    x = int(x)
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    return x


def positive_float_validator(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: a finite float ``> 0`` (use with ``converter=float``)."""
    check_positive_float(value, attribute.name)


def positive_int_validator(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an integer ``>= 1``."""
    check_positive_int(value, attribute.name)


def _field_converter(check: Any) -> attrs.Converter:
    def convert(value: Any, field: Any) -> float:
        return check(value, field.name)

    return attrs.Converter(convert, takes_field=True)


#: attrs converter: a finite float ``> 0``; rejects strings, bools and ``None`` by field name
positive_float_converter = _field_converter(check_positive_float)
#: attrs converter: a finite float ``>= 0``
nonnegative_float_converter = _field_converter(check_nonnegative_float)
