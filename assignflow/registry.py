"""Registries: short names for the pluggable components of assignflow.

Five families of components can be given by name wherever assignflow takes
one: graphs, integrators, losses, gradient estimators and predictors. Each
family owns a :class:`Registry` mapping a name (``"euler"``) to a class or
factory; :meth:`Registry.resolve` turns a name, a class or an instance into an
instance. Built-in components register themselves when their module is
imported::

    @registry.integrators.register("euler")
    class Euler: ...

Other packages add components through `entry points`_ in the groups
``assignflow.graphs``, ``assignflow.integrators``, ``assignflow.losses``,
``assignflow.gradient_estimators`` and ``assignflow.predictors``, loaded
lazily, once, by the first query of the registry.

Rules
-----
* Names are case-insensitive and ``-`` equals ``_`` (``"Exponential-Krylov"``
  is ``"exponential_krylov"``); they consist of letters, digits, ``_`` and
  inner dots.
* First registration wins. Registering a name taken by another object raises
  ``ValueError``; an entry point asking for a taken name is skipped with a
  :class:`PluginWarning`. The built-ins register while ``assignflow`` is
  imported, before any query can load a plugin, so plugins cannot take their
  names.
* A plugin that raises anything while it is loaded -- any ``Exception``, and
  also ``SystemExit`` and the other ``BaseException`` subclasses except
  ``KeyboardInterrupt`` -- is skipped with a :class:`PluginWarning`: loading a
  plugin never ends the host process; only the user's Ctrl-C goes through (and
  the next query loads again).
* Entry points are loaded under one process-wide lock. A query from another
  thread during the loading waits for it to end, so it never reports a plugin
  as unknown; the loading thread itself (a plugin that queries a registry
  while it is imported) sees the entries loaded so far.

This module imports nothing from the rest of the package.

.. _entry points: https://packaging.python.org/en/latest/specifications/entry-points/
"""

from __future__ import annotations

import difflib
import importlib.metadata
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["PluginWarning", "Registry", "all_registries", "gradient_estimators", "graphs"]
__all__ += ["integrators", "losses", "predictors"]

_NAME = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")
_LOAD_LOCK = threading.RLock()  # held while entry points load, shared by all registries


class PluginWarning(UserWarning):
    """A plugin could not be loaded, or asked for a name that is already taken."""


def _norm(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"registry names must be strings, got {type(name).__name__}")
    return name.strip().lower().replace("-", "_")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _dist(ep: importlib.metadata.EntryPoint) -> str:
    try:
        return ep.dist.name  # type: ignore[union-attr]
    except Exception:  # no or broken distribution metadata
        return ep.module.partition(".")[0]


class Registry:
    """Names for one family of components.

    Parameters
    ----------
    kind : str
        Singular name of the family, used in messages (``"integrator"``).
    group : str, optional
        Entry-point group of the plugins; default ``"assignflow.<plural>"``
        (``"assignflow.losses"`` for the kind ``"loss"``).

    Examples
    --------
    >>> reg = Registry("widget", group="example.widgets")
    >>> @reg.register("simple")
    ... class Simple:
    ...     def __init__(self, size=1):
    ...         self.size = size
    >>> reg.resolve("Simple", size=3).size
    3
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.plural = kind + ("es" if kind.endswith("s") else "s")
        self.group = f"assignflow.{self.plural}" if group is None else group
        self._entries: dict[str, tuple[Any, str]] = {}  # name -> (object, origin)
        self._lock = threading.Lock()  # guards _entries; never held while loading
        self._loaded = self._loading = False

    def register(self, name: str, obj: Any = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        Parameters
        ----------
        name : str
            The name (see the module's rules).
        obj : callable, optional
            The class or factory.

        Returns
        -------
        object
            ``obj`` itself, or a decorator that registers its argument and
            returns it unchanged.

        Raises
        ------
        ValueError
            If the name is invalid or taken by another object (registering
            the same object again does nothing).
        """
        key = _norm(name)
        if not _NAME.fullmatch(key):
            raise ValueError(f"invalid {self.kind} name {name!r}: use letters, digits, '_', '-'")
        if obj is None:
            return lambda target: self.register(name, target)
        if not callable(obj):
            raise TypeError(f"only classes and factories can be registered, got {obj!r}")
        origin = str(getattr(obj, "__module__", None) or "?").partition(".")[0]
        if not self._add(key, obj, origin):
            raise ValueError(f"the {self.kind} name {key!r} is taken by {self._describe(key)}")
        return obj

    def _add(self, key: str, obj: Any, origin: str) -> bool:
        # store (obj, origin) unless key is taken; return whether key now maps to obj
        with self._lock:
            return self._entries.setdefault(key, (obj, origin))[0] is obj

    def _snapshot(self) -> dict[str, tuple[Any, str]]:
        self._ensure_loaded()
        with self._lock:
            return dict(self._entries)

    def _describe(self, key: str) -> str:
        obj, origin = self._entries[key]
        return f"{_qualname(obj)} [{origin}]"

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with _LOAD_LOCK:  # other threads wait here until the loading has ended
            if self._loaded or self._loading:  # loaded, or a loading plugin queries us
                return
            self._loading = True
            try:
                self._load_entry_points()
                self._loaded = True
            finally:
                self._loading = False

    def _load_entry_points(self) -> None:
        try:
            eps = importlib.metadata.entry_points(group=self.group)
        except Exception as exc:  # broken metadata of some installed package
            warnings.warn(f"cannot read {self.group!r}: {exc!r}", PluginWarning, stacklevel=2)
            return
        for ep in eps:
            where = f"{self.kind} plugin {ep.name!r} = {ep.value!r} from {_dist(ep)!r}"
            try:
                if not _NAME.fullmatch(key := _norm(ep.name)):
                    raise ValueError(f"invalid name {ep.name!r}")
                if not callable(obj := ep.load()):
                    raise TypeError(f"{obj!r} is not a class or factory")
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: a plugin never ends the host
                warnings.warn(f"skipping {where}: {exc!r}", PluginWarning, stacklevel=2)
                continue
            if self._add(key, obj, _dist(ep)):
                with self._lock:  # also when the plugin's module registered it on import
                    self._entries[key] = (obj, _dist(ep))
            else:
                msg = f"skipping {where}: the name is taken by {self._describe(key)}"
                warnings.warn(msg, PluginWarning, stacklevel=2)

    def _entry(self, name: str) -> tuple[Any, str]:
        entry = self._snapshot().get(_norm(name))
        if entry is None:
            known = self.names()
            close = difflib.get_close_matches(_norm(name), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(map(repr, known)) or "none"
            raise ValueError(f"Unknown {self.kind} {name!r}.{hint} Known {self.plural}: {listed}")
        return entry

    def get(self, name: str) -> Any:
        """Return the class or factory registered under ``name``.

        Parameters
        ----------
        name : str
            A registered name.

        Returns
        -------
        object
            The registered class or factory.

        Raises
        ------
        ValueError
            If the name is unknown; the message lists the known names and the
            closest one.
        """
        return self._entry(name)[0]

    def origin(self, name: str) -> str:
        """Return where the entry ``name`` comes from.

        Parameters
        ----------
        name : str
            A registered name.

        Returns
        -------
        str
            ``"assignflow"`` for the built-ins, the distribution for entry
            points, else the top-level package of the object's module.
        """
        return self._entry(name)[1]

    def resolve(self, spec: Any, /, **kwargs: Any) -> Any:
        """Build an instance from a name, a class or an instance.

        Parameters
        ----------
        spec : str, type or object
            A name (gives ``get(spec)(**kwargs)``), a class (gives
            ``spec(**kwargs)``) or an instance (returned as it is).
        **kwargs
            Options of the class or factory; not allowed with an instance.

        Returns
        -------
        object
            The instance.
        """
        if isinstance(spec, str):
            return self.get(spec)(**kwargs)
        if spec is None:
            raise TypeError(f"a {self.kind} is required: a name, a class or an instance")
        if isinstance(spec, type):
            return spec(**kwargs)
        if kwargs:
            msg = f"options {sorted(kwargs)} need a {self.kind} name or class, not an instance"
            raise TypeError(f"{msg} ({type(spec).__name__})")
        return spec

    def name_of(self, obj_or_cls: Any) -> str | None:
        """Return the name of a registered object, or of the class of an instance.

        Parameters
        ----------
        obj_or_cls : object
            A registered class or factory, or an instance of a registered class.

        Returns
        -------
        str or None
            The first name it was registered under, None if it is not registered.
        """
        entries = self._snapshot()
        for candidate in (obj_or_cls, type(obj_or_cls)):
            for key, (obj, _) in entries.items():
                if obj is candidate:
                    return key
        return None

    def info(self) -> list[dict[str, str]]:
        """Describe the entries, sorted by name (``assignflow plugins`` prints them).

        Returns
        -------
        list of dict
            ``{"name": ..., "object": "module.QualName", "origin": ...}`` per entry.
        """
        return [
            {"name": key, "object": _qualname(obj), "origin": origin}
            for key, (obj, origin) in sorted(self._snapshot().items())
        ]

    def names(self) -> list[str]:
        """Return the registered names, sorted.

        Returns
        -------
        list of str
            The names.
        """
        return sorted(self._snapshot())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _norm(name) in self._snapshot()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __repr__(self) -> str:  # loads no entry points
        return f"Registry({self.kind!r}, group={self.group!r})"


graphs = Registry("graph")
integrators = Registry("integrator")
losses = Registry("loss")
gradient_estimators = Registry("gradient_estimator")
predictors = Registry("predictor")


def all_registries() -> dict[str, Registry]:
    """Return the registries by plural; the entry-point group of ``key`` is ``assignflow.<key>``.

    Returns
    -------
    dict of str to Registry
        ``graphs``, ``integrators``, ``losses``, ``gradient_estimators``, ``predictors``.
    """
    return {r.plural: r for r in (graphs, integrators, losses, gradient_estimators, predictors)}
