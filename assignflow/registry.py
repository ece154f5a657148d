"""Plugin registries for the pluggable components of assignflow.

assignflow has four families of pluggable components -- graphs, integrators,
losses and gradient estimators.  Each family owns a :class:`Registry` that maps
a short, normalised name (``"euler"``, ``"exponential_krylov"``, ...) to a class
or factory.  Estimators accept either such a name, a class or a ready-made
instance and turn it into an object with :meth:`Registry.resolve`.

Built-in components register themselves when their family module is imported::

    from assignflow.registry import integrators

    @integrators.register("euler")
    class Euler:
        ...

Third-party packages add components without importing anything at install
time, by declaring `entry points`_ in one of the groups
``assignflow.graphs``, ``assignflow.integrators``, ``assignflow.losses`` and
``assignflow.gradient_estimators``.  In the plugin's ``pyproject.toml``:

.. code-block:: toml

    [project.entry-points."assignflow.integrators"]
    my_integrator = "my_package.module:MyIntegrator"

After ``pip install`` of that package, ``integrators.get("my_integrator")``
returns ``MyIntegrator`` and estimators accept ``integrator="my_integrator"``.
Entry points are discovered lazily, the first time a registry is queried, and
loaded once.  A plugin that fails to import, or that tries to take a name that
is already used (in particular the name of a built-in component), does not
break assignflow: it is skipped with a :class:`PluginWarning`.  Built-in names
can never be shadowed.

.. _entry points: https://packaging.python.org/en/latest/specifications/entry-points/

Notes
-----
This module deliberately imports nothing from the rest of the ``assignflow``
package, so that the family modules can import it without import cycles, and
so that entry-point discovery never triggers importing the package.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import re
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = [
    "REGISTRIES",
    "PluginWarning",
    "Registry",
    "all_registries",
    "gradient_estimators",
    "graphs",
    "integrators",
    "losses",
    "predictors",
]

_T = TypeVar("_T")

#: Origin recorded for built-in entries.
BUILTIN_ORIGIN = "assignflow"

_NAME_RE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
_CAMEL_BOUNDARY_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class PluginWarning(UserWarning):
    """Warning emitted when a third-party plugin cannot be used.

    Raised (as a warning, never as an exception) when an entry point fails to
    load, when it tries to use a name that is already taken or invalid, and
    when a built-in component replaces a plugin entry of the same name.
    """


@dataclasses.dataclass
class _Entry:
    """One name of a registry.

    Attributes
    ----------
    obj : object
        The registered class or factory.
    origin : str
        ``"assignflow"`` for built-ins, the distribution name for entry
        points, otherwise the module of ``obj``.
    builtin : bool
        Whether the entry is a built-in one (cannot be shadowed or removed).
    alias_of : str or None
        The primary name if this name is an alias, else ``None``.
    from_entry_point : bool
        Whether the entry was registered by entry-point discovery.
    """

    obj: Any
    origin: str
    builtin: bool
    alias_of: str | None = None
    from_entry_point: bool = False


def _is_builtin_object(obj: Any) -> bool:
    """Return whether ``obj`` is defined inside the assignflow package."""
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and (
        module == BUILTIN_ORIGIN or module.startswith(BUILTIN_ORIGIN + ".")
    )


def _qualified_name(obj: Any) -> str:
    """Return ``"module.QualName"`` for ``obj`` (or its ``repr`` as a fallback)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if isinstance(qualname, str):
        return f"{module}.{qualname}" if isinstance(module, str) else qualname
    return repr(obj)


def _snake_case(name: str) -> str:
    """Convert a CamelCase identifier to snake_case.

    Examples
    --------
    >>> _snake_case("ExponentialKrylov")
    'exponential_krylov'
    >>> _snake_case("SPSAEstimator")
    'spsa_estimator'
    """
    return _CAMEL_BOUNDARY_RE.sub("_", name).lower()


def _normalize(name: Any) -> str:
    """Normalise a name for registration and lookup.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"Registry names must be strings, got {type(name).__name__}: {name!r}.")
    return name.strip().lower().replace("-", "_")


def _validate(name: Any) -> str:
    """Normalise ``name`` and check that it is a valid registry name.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If the normalised name is empty or contains characters other than
        letters, digits, ``_``, ``-`` and (inner) dots.
    """
    normalized = _normalize(name)
    if not normalized:
        raise ValueError("Registry names must be non-empty strings.")
    if not _NAME_RE.fullmatch(normalized):
        raise ValueError(
            f"Invalid registry name {name!r}: use letters, digits, '_', '-' and inner dots only."
        )
    return normalized


def _dist_name(ep: importlib.metadata.EntryPoint) -> str | None:
    """Return the name of the distribution that declares ``ep``, if known."""
    try:
        dist = getattr(ep, "dist", None)
        name = getattr(dist, "name", None) if dist is not None else None
    except Exception:  # broken metadata must not break discovery
        return None
    return name if isinstance(name, str) and name else None


class Registry:
    """A name -> class/factory mapping for one family of pluggable components.

    Parameters
    ----------
    kind : str
        Singular name of the component family, used in messages
        (``"integrator"``, ``"loss"``, ...).
    group : str, optional
        Entry-point group scanned for third-party plugins.  Defaults to
        ``f"assignflow.{kind}"``.

    Notes
    -----
    Names are normalised (stripped, lower case, ``-`` replaced by ``_``) both
    when registering and when looking up.  Entries whose object is defined in
    the ``assignflow`` package are *built-in*: they cannot be shadowed (not
    even with ``overwrite=True``) nor unregistered.

    Entry points of :attr:`group` are loaded lazily, on the first query
    (:meth:`get`, :meth:`resolve`, :meth:`names`, ``in``, ``iter``, ``len``,
    :meth:`items`, :meth:`info`, :meth:`name_of`, :meth:`origin`,
    :meth:`unregister`); :meth:`register` never triggers discovery.

    Examples
    --------
    >>> reg = Registry("integrator", group="example.integrators")
    >>> @reg.register
    ... class ExplicitEuler:
    ...     def __init__(self, step=0.1):
    ...         self.step = step
    >>> reg.names()
    ['explicit_euler']
    >>> reg.resolve("Explicit-Euler", step=0.5).step
    0.5
    """

    def __init__(self, kind: str, *, group: str | None = None) -> None:
        if not isinstance(kind, str) or not kind.strip():
            raise ValueError("kind must be a non-empty string.")
        self.kind: str = kind.strip()
        self.group: str = group if group is not None else f"assignflow.{self.kind}"
        self._entries: dict[str, _Entry] = {}
        self._loaded: bool = False
        self._loading: bool = False

    # ------------------------------------------------------------------ naming
    @property
    def plural(self) -> str:
        """Plural of :attr:`kind` used in messages (``kind + "s"``)."""
        return self.kind if self.kind.endswith("s") else self.kind + "s"

    # ------------------------------------------------------------ registration
    def register(
        self,
        name_or_obj: str | Any | None = None,
        obj: _T | None = None,
        *,
        aliases: Iterable[str] = (),
        overwrite: bool = False,
    ) -> Any:
        """Register a class or factory under a name.

        Usable in three ways::

            @registry.register("euler")   # explicit name
            class Euler: ...

            @registry.register            # name derived: ExponentialKrylov
            class ExponentialKrylov: ...  # -> "exponential_krylov"

            registry.register("name", factory)

        Parameters
        ----------
        name_or_obj : str or callable, optional
            The name, or (bare decorator form) the object itself.  When
            omitted, the name is derived from the object's ``__name__``
            converted to snake_case.
        obj : callable, optional
            The class or factory to register (call form).
        aliases : iterable of str, optional
            Additional names for the same object.
        overwrite : bool, default False
            Replace an existing non-built-in entry of the same name.  Built-in
            entries can never be replaced.

        Returns
        -------
        object
            ``obj`` unchanged (call and bare-decorator forms), or a decorator
            that registers its argument and returns it unchanged.

        Raises
        ------
        TypeError
            If the name is not a string or the object is not callable.
        ValueError
            If the name is empty or invalid, or already taken (by a built-in,
            or by another object and ``overwrite`` is false).

        Notes
        -----
        Registering the very same object again under the same name is a
        no-op.  A built-in object registered under a name held by a plugin
        replaces the plugin entry with a :class:`PluginWarning`.
        """
        aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)

        if name_or_obj is not None and not isinstance(name_or_obj, str):
            if obj is not None:
                raise TypeError(
                    f"register() got two objects; the first argument must be a name (str), "
                    f"got {type(name_or_obj).__name__}."
                )
            if not callable(name_or_obj):
                raise TypeError(
                    f"register() expects a name (str) or a class/factory, got {name_or_obj!r}."
                )
            self._add(None, name_or_obj, aliases=aliases, overwrite=overwrite)
            return name_or_obj

        name = name_or_obj
        if name is not None:
            _validate(name)  # fail early, at decoration time
        if obj is not None:
            self._add(name, obj, aliases=aliases, overwrite=overwrite)
            return obj

        def decorator(target: _T) -> _T:
            self._add(name, target, aliases=aliases, overwrite=overwrite)
            return target

        return decorator

    def _add(
        self,
        name: str | None,
        obj: Any,
        *,
        aliases: tuple[str, ...] = (),
        overwrite: bool = False,
        origin: str | None = None,
        builtin: bool | None = None,
        from_entry_point: bool = False,
    ) -> str:
        """Validate and store an entry; return its normalised primary name."""
        if not callable(obj):
            raise TypeError(
                f"Only classes and factories can be registered as {self.plural}, got {obj!r}."
            )
        if name is None:
            derived = getattr(obj, "__name__", None)
            if not isinstance(derived, str) or derived == "<lambda>":
                raise TypeError(
                    f"Cannot derive a {self.kind} name from {obj!r}; pass a name explicitly."
                )
            name = _snake_case(derived)
        primary = _validate(name)
        alias_names = [_validate(alias) for alias in aliases]
        all_names = [primary, *alias_names]
        if len(set(all_names)) != len(all_names):
            raise ValueError(f"Duplicate names in {all_names!r}.")

        if builtin is None:
            builtin = _is_builtin_object(obj)
        if builtin:
            origin = BUILTIN_ORIGIN
        elif origin is None:
            module = getattr(obj, "__module__", None)
            origin = module if isinstance(module, str) else "<unknown>"

        # Check every name before touching anything, so failures are atomic.
        replaced: list[str] = []
        for key in all_names:
            existing = self._entries.get(key)
            if existing is None:
                continue
            if existing.obj is obj:
                continue  # re-registering the same object is a no-op
            if existing.builtin:
                if builtin and _qualified_name(existing.obj) == _qualified_name(obj):
                    continue  # the defining module was reloaded
                raise ValueError(
                    f"Cannot register {_qualified_name(obj)} as {self.kind} {key!r}: "
                    f"the name belongs to the built-in {_qualified_name(existing.obj)}, "
                    f"and built-in names cannot be shadowed."
                )
            if builtin:
                replaced.append(key)
                continue
            if not overwrite:
                raise ValueError(
                    f"A {self.kind} named {key!r} is already registered "
                    f"({_qualified_name(existing.obj)}, from {existing.origin!r}); "
                    f"use overwrite=True to replace it."
                )

        for key in replaced:
            existing = self._entries[key]
            warnings.warn(
                f"The built-in {self.kind} {key!r} ({_qualified_name(obj)}) replaces the "
                f"entry {_qualified_name(existing.obj)} registered by {existing.origin!r}; "
                f"built-in names cannot be shadowed by plugins.",
                PluginWarning,
                stacklevel=3,
            )

        for key in all_names:
            existing = self._entries.get(key)
            if existing is not None and existing.obj is not obj:
                self._drop(key, keep=all_names)
            self._entries[key] = _Entry(
                obj=obj,
                origin=origin,
                builtin=builtin,
                alias_of=None if key == primary else primary,
                from_entry_point=from_entry_point,
            )
        return primary

    def _drop(self, key: str, keep: Iterable[str] = ()) -> None:
        """Remove ``key``; if it is a primary name, also remove its aliases."""
        entry = self._entries.pop(key, None)
        if entry is None or entry.alias_of is not None:
            return
        keep = set(keep)
        for other, other_entry in list(self._entries.items()):
            if other_entry.alias_of == key and other not in keep:
                del self._entries[other]

    def unregister(self, name: str) -> None:
        """Remove a name (and, for a primary name, its aliases).

        Parameters
        ----------
        name : str
            Name to remove (normalised).

        Raises
        ------
        ValueError
            If the name is unknown or belongs to a built-in entry.
        """
        self._ensure_loaded()
        key = _normalize(name)
        entry = self._entries.get(key)
        if entry is None:
            raise self._unknown(name)
        if entry.builtin:
            raise ValueError(f"The built-in {self.kind} {key!r} cannot be unregistered.")
        self._drop(key)

    # ----------------------------------------------------------- entry points
    def _ensure_loaded(self) -> None:
        if not self._loaded and not self._loading:
            self.load_entry_points()

    def load_entry_points(self, *, reload: bool = False) -> list[str]:
        """Discover and register the entry points of :attr:`group`.

        Called automatically, once, by the first query of the registry.  Each
        entry point is loaded and its object registered under the entry
        point's name, with the distribution name as origin.  Failures never
        raise: they are reported as :class:`PluginWarning`.

        Parameters
        ----------
        reload : bool, default False
            Discard the entries previously registered from entry points and
            scan again (e.g. after installing a plugin in a running process).
            Without it, calls after the first one do nothing.

        Returns
        -------
        list of str
            Names registered from entry points by this call.
        """
        if self._loading or (self._loaded and not reload):
            return []
        self._loading = True
        self._loaded = True
        loaded: list[str] = []
        try:
            if reload:
                for key, entry in list(self._entries.items()):
                    if entry.from_entry_point and not entry.builtin and key in self._entries:
                        self._drop(key)
            try:
                eps = importlib.metadata.entry_points(group=self.group)
            except Exception as exc:  # broken metadata of some installed package
                warnings.warn(
                    f"Could not read the entry points of group {self.group!r}: "
                    f"{type(exc).__name__}: {exc}",
                    PluginWarning,
                    stacklevel=2,
                )
                return loaded
            for ep in eps:
                name = self._load_entry_point(ep)
                if name is not None:
                    loaded.append(name)
        finally:
            self._loading = False
        return loaded

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> str | None:
        """Load and register one entry point; warn and return None on failure."""
        dist = _dist_name(ep)
        where = f"{self.kind} plugin {ep.name!r} = {ep.value!r}" + (
            f" from distribution {dist!r}" if dist else ""
        )
        try:
            key = _validate(ep.name)
        except (TypeError, ValueError) as exc:
            warnings.warn(f"Skipping {where}: {exc}", PluginWarning, stacklevel=3)
            return None
        try:
            obj = ep.load()
        except Exception as exc:
            warnings.warn(
                f"Could not load {where}: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=3,
            )
            return None
        if not callable(obj):
            warnings.warn(
                f"Skipping {where}: {obj!r} is not a class or factory.",
                PluginWarning,
                stacklevel=3,
            )
            return None

        builtin = _is_builtin_object(obj) and dist in (None, BUILTIN_ORIGIN)
        existing = self._entries.get(key)
        if existing is not None:
            if existing.obj is obj:
                # The plugin module registered itself on import, or the same
                # distribution is visible twice on sys.path: record the origin.
                if not existing.builtin:
                    existing.origin = dist or existing.origin
                    existing.from_entry_point = True
                return None
            owner = "the built-in" if existing.builtin else "the"
            warnings.warn(
                f"Skipping {where}: the name {key!r} is already taken by {owner} "
                f"{self.kind} {_qualified_name(existing.obj)} (from {existing.origin!r}).",
                PluginWarning,
                stacklevel=3,
            )
            return None
        try:
            self._add(key, obj, origin=dist, builtin=builtin, from_entry_point=True)
        except Exception as exc:
            warnings.warn(
                f"Could not register {where}: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=3,
            )
            return None
        return key

    # ----------------------------------------------------------------- lookup
    def _unknown(self, name: Any) -> ValueError:
        known = sorted(self._entries)
        message = f"Unknown {self.kind} {name!r}."
        if isinstance(name, str):
            matches = difflib.get_close_matches(_normalize(name), known)
            if matches:
                message += " Did you mean " + " or ".join(repr(m) for m in matches) + "?"
        if known:
            message += f" Known {self.plural}: " + ", ".join(repr(k) for k in known) + "."
        else:
            message += f" No {self.plural} are registered."
        return ValueError(message)

    def get(self, name: str) -> Any:
        """Return the class or factory registered under ``name``.

        Parameters
        ----------
        name : str
            Registered name (normalised before lookup).

        Returns
        -------
        object
            The registered class or factory.

        Raises
        ------
        TypeError
            If ``name`` is not a string.
        ValueError
            If the name is unknown; the message lists close matches and all
            known names.
        """
        self._ensure_loaded()
        entry = self._entries.get(_normalize(name))
        if entry is None:
            raise self._unknown(name)
        return entry.obj

    def resolve(self, spec: Any, /, **kwargs: Any) -> Any:
        """Turn a name, a class or an instance into an instance.

        Parameters
        ----------
        spec : str, type or object
            A registered name (instantiated as ``get(spec)(**kwargs)``), a
            class (instantiated as ``spec(**kwargs)``), or an already built
            instance (returned unchanged).
        **kwargs
            Options passed to the class or factory.

        Returns
        -------
        object
            The instance.

        Raises
        ------
        TypeError
            If ``spec`` is None, or an instance is given together with
            options.
        ValueError
            If ``spec`` is an unknown name.
        """
        self._ensure_loaded()
        if spec is None:
            raise TypeError(
                f"A {self.kind} is required: pass a registered name, a class or an instance, "
                f"not None."
            )
        if isinstance(spec, str):
            return self.get(spec)(**kwargs)
        if isinstance(spec, type):
            return spec(**kwargs)
        if kwargs:
            raise TypeError(
                f"Options {sorted(kwargs)} were given together with an already built "
                f"{self.kind} instance ({type(spec).__name__}); options go with a "
                f"{self.kind} name or class, not with an instance."
            )
        return spec

    def name_of(self, obj_or_cls: Any) -> str | None:
        """Return the registered (primary) name of an object, class or instance.

        Parameters
        ----------
        obj_or_cls : object
            A registered class or factory, or an instance of a registered
            class.

        Returns
        -------
        str or None
            The primary name, or ``None`` if neither the object nor its class
            is registered.
        """
        self._ensure_loaded()
        candidates = [obj_or_cls]
        if not isinstance(obj_or_cls, type):
            candidates.append(type(obj_or_cls))
        for candidate in candidates:
            aliases = []
            for key, entry in sorted(self._entries.items()):
                if entry.obj is candidate:
                    if entry.alias_of is None:
                        return key
                    aliases.append(entry.alias_of)
            if aliases:
                return aliases[0]
        return None

    def origin(self, name: str) -> str:
        """Return where the entry ``name`` comes from.

        Returns
        -------
        str
            ``"assignflow"`` for built-ins, the distribution name for entry
            points, otherwise the module that defines the object.

        Raises
        ------
        ValueError
            If the name is unknown.
        """
        self._ensure_loaded()
        entry = self._entries.get(_normalize(name))
        if entry is None:
            raise self._unknown(name)
        return entry.origin

    def is_builtin(self, name: str) -> bool:
        """Return whether ``name`` is a built-in entry.

        Raises
        ------
        ValueError
            If the name is unknown.
        """
        self._ensure_loaded()
        entry = self._entries.get(_normalize(name))
        if entry is None:
            raise self._unknown(name)
        return entry.builtin

    def names(self) -> list[str]:
        """Return all registered names (aliases included), sorted."""
        self._ensure_loaded()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, Any]]:
        """Return ``(name, object)`` pairs for all names (aliases included), sorted."""
        self._ensure_loaded()
        return [(key, self._entries[key].obj) for key in sorted(self._entries)]

    def info(self) -> list[dict[str, Any]]:
        """Describe the entries, e.g. for ``assignflow plugins``.

        Returns
        -------
        list of dict
            One record per primary name, sorted by name, with keys ``name``,
            ``object`` (qualified name string), ``origin``, ``builtin`` and
            ``aliases`` (sorted tuple of alias names).
        """
        self._ensure_loaded()
        records = []
        for key in sorted(self._entries):
            entry = self._entries[key]
            if entry.alias_of is not None:
                continue
            aliases = tuple(
                sorted(
                    k for k, e in self._entries.items() if e.alias_of == key and e.obj is entry.obj
                )
            )
            records.append(
                {
                    "name": key,
                    "object": _qualified_name(entry.obj),
                    "origin": entry.origin,
                    "builtin": entry.builtin,
                    "aliases": aliases,
                }
            )
        return records

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return isinstance(name, str) and _normalize(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        # Does not trigger entry-point discovery (safe to call while loading).
        state = "" if self._loaded else ", entry points not loaded yet"
        return (
            f"Registry({self.kind!r}, group={self.group!r}, names={sorted(self._entries)!r}{state})"
        )


graphs = Registry("graph", group="assignflow.graphs")
integrators = Registry("integrator", group="assignflow.integrators")
losses = Registry("loss", group="assignflow.losses")
gradient_estimators = Registry("gradient_estimator", group="assignflow.gradient_estimators")
predictors = Registry("predictor", group="assignflow.predictors")

#: Registries by entry-point group suffix (``"assignflow.<key>"``).
REGISTRIES: dict[str, Registry] = {
    "graphs": graphs,
    "integrators": integrators,
    "losses": losses,
    "gradient_estimators": gradient_estimators,
    "predictors": predictors,
}


def all_registries() -> dict[str, Registry]:
    """Return the registries keyed by entry-point group suffix.

    Returns
    -------
    dict of str to Registry
        ``{"graphs": graphs, "integrators": integrators, "losses": losses,
        "gradient_estimators": gradient_estimators}`` (the module-level
        mapping :data:`REGISTRIES` itself).
    """
    return REGISTRIES
