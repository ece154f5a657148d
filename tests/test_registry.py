"""Tests for :mod:`assignflow.registry`."""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest

import assignflow.registry as registry_module
from assignflow.registry import (
    REGISTRIES,
    PluginWarning,
    Registry,
    all_registries,
    gradient_estimators,
    graphs,
    integrators,
    losses,
)

PLUGIN_MODULE = "af_test_plugin_xyz"
PLUGIN_DIST = "af-test-plugin-xyz"


def _fresh(kind: str = "integrator") -> Registry:
    """A registry with a unique, empty entry-point group."""
    return Registry(kind, group=f"assignflow.test_kind_{uuid.uuid4().hex}")


def _builtin_class(name: str = "Euler") -> type:
    """A class that looks like it is defined inside assignflow."""
    cls = type(name, (), {"__init__": lambda self, **kw: setattr(self, "kw", kw)})
    cls.__module__ = "assignflow.fake"
    return cls


class Euler:
    def __init__(self, step: float = 0.1) -> None:
        self.step = step


class ExponentialKrylov:
    def __init__(self, dim: int = 10) -> None:
        self.dim = dim


# --------------------------------------------------------------------------- static
def test_module_imports_nothing_from_assignflow():
    source = Path(registry_module.__file__).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name != "assignflow" and not alias.name.startswith("assignflow.")
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in registry.py"
            assert node.module is not None
            assert node.module != "assignflow" and not node.module.startswith("assignflow.")


def test_module_level_registries():
    assert all_registries() is REGISTRIES
    assert REGISTRIES == {
        "graphs": graphs,
        "integrators": integrators,
        "losses": losses,
        "gradient_estimators": gradient_estimators,
        "predictors": REGISTRIES["predictors"],
    }
    for suffix, reg in REGISTRIES.items():
        assert reg.group == f"assignflow.{suffix}"
    assert integrators.kind == "integrator"
    assert Registry("widget").group == "assignflow.widget"


# --------------------------------------------------------------------------- register
def test_decorator_forms_and_call_form():
    reg = _fresh()

    @reg.register("euler")
    class A:
        pass

    @reg.register
    class ExponentialKrylov:
        pass

    @reg.register()
    class SPSAEstimator:
        pass

    def make_rk4():
        return "rk4"

    assert reg.register("rk4", make_rk4) is make_rk4
    assert reg.get("euler") is A
    assert reg.get("exponential_krylov") is ExponentialKrylov
    assert reg.get("spsa_estimator") is SPSAEstimator
    assert reg.get("rk4") is make_rk4
    assert reg.names() == ["euler", "exponential_krylov", "rk4", "spsa_estimator"]


def test_register_returns_object_unchanged():
    reg = _fresh()
    cls = type("Thing", (), {})
    assert reg.register(cls) is cls
    assert reg.register("other")(cls) is cls


def test_name_normalisation():
    reg = _fresh()
    reg.register("  Exponential-Krylov ", ExponentialKrylov)
    assert reg.names() == ["exponential_krylov"]
    for spelling in ["exponential_krylov", "Exponential-Krylov", " EXPONENTIAL-krylov "]:
        assert reg.get(spelling) is ExponentialKrylov
        assert spelling in reg


@pytest.mark.parametrize(
    ("name", "exc"),
    [("", ValueError), ("   ", ValueError), ("two words", ValueError), (3, TypeError)],
)
def test_invalid_names(name, exc):
    reg = _fresh()
    with pytest.raises(exc):
        reg.register(name, Euler)
    with pytest.raises(exc):
        reg.register(Euler, aliases=[name])
    assert len(reg) == 0


def test_non_callable_or_unnamed_objects_rejected():
    reg = _fresh()
    with pytest.raises(TypeError):
        reg.register("x", 42)
    with pytest.raises(TypeError):
        reg.register(lambda: None)  # no usable name
    with pytest.raises(TypeError):
        reg.register(Euler, ExponentialKrylov)


def test_duplicate_name_and_overwrite():
    reg = _fresh()
    reg.register("euler", Euler)
    reg.register("euler", Euler)  # same object again: no-op
    with pytest.raises(ValueError, match="already registered"):
        reg.register("euler", ExponentialKrylov)
    assert reg.get("euler") is Euler
    reg.register("Euler", ExponentialKrylov, overwrite=True)
    assert reg.get("euler") is ExponentialKrylov
    assert reg.origin("euler") == __name__


def test_aliases():
    reg = _fresh()
    reg.register("exponential_krylov", ExponentialKrylov, aliases=("krylov", "Exp-K"))
    assert reg.get("krylov") is ExponentialKrylov
    assert reg.get("exp_k") is ExponentialKrylov
    assert reg.name_of(ExponentialKrylov) == "exponential_krylov"
    (record,) = reg.info()
    assert record["aliases"] == ("exp_k", "krylov")
    reg.unregister("exponential_krylov")
    assert len(reg) == 0
    with pytest.raises(ValueError, match="Duplicate"):
        reg.register("a", Euler, aliases=["A"])


def test_builtins_cannot_be_shadowed_or_unregistered():
    reg = _fresh()
    builtin = _builtin_class("Euler")
    reg.register("euler", builtin)
    assert reg.origin("euler") == "assignflow"
    assert reg.is_builtin("euler")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="built-in"):
            reg.register("euler", Euler, overwrite=overwrite)
        with pytest.raises(ValueError, match="built-in"):
            reg.register("euler", _builtin_class("Other"), overwrite=overwrite)
    with pytest.raises(ValueError, match="built-in"):
        reg.unregister("euler")
    assert reg.get("euler") is builtin


def test_builtin_module_detection():
    reg = _fresh()
    top = type("Top", (), {})
    top.__module__ = "assignflow"
    lookalike = type("Lookalike", (), {})
    lookalike.__module__ = "assignflow_extras.mod"
    reg.register(top)
    reg.register(lookalike)
    assert reg.is_builtin("top") and reg.origin("top") == "assignflow"
    assert not reg.is_builtin("lookalike")
    assert reg.origin("lookalike") == "assignflow_extras.mod"


def test_builtin_module_reload_reregisters():
    reg = _fresh()
    reg.register("euler", _builtin_class("Euler"))
    reloaded = _builtin_class("Euler")  # same qualified name, new object
    reg.register("euler", reloaded)
    assert reg.get("euler") is reloaded


def test_builtin_replaces_plugin_entry_with_warning():
    reg = _fresh()
    reg.register("euler", Euler, aliases=["eu"])
    builtin = _builtin_class("Euler")
    with pytest.warns(PluginWarning, match="euler"):
        reg.register("euler", builtin)
    assert reg.get("euler") is builtin
    assert reg.origin("euler") == "assignflow"
    assert "eu" not in reg  # aliases of the replaced plugin entry are gone


def test_unregister():
    reg = _fresh()
    reg.register("euler", Euler)
    reg.unregister("Euler")
    assert "euler" not in reg
    with pytest.raises(ValueError, match="Unknown integrator 'euler'"):
        reg.unregister("euler")


# --------------------------------------------------------------------------- lookup
def test_unknown_name_message():
    reg = _fresh()
    reg.register("euler", Euler)
    reg.register(ExponentialKrylov)
    with pytest.raises(ValueError) as info:
        reg.get("eulr")
    message = str(info.value)
    assert "integrator" in message
    assert "'eulr'" in message
    assert "Did you mean 'euler'?" in message
    assert "'euler'" in message and "'exponential_krylov'" in message
    assert message.index("'euler'", message.index("Known")) < message.index("'exponential_krylov'")

    empty = _fresh("loss")
    with pytest.raises(ValueError, match="'nothing'"):
        empty.get("nothing")
    with pytest.raises(TypeError):
        reg.get(None)


def test_resolve():
    reg = _fresh()
    reg.register("euler", Euler)
    obj = reg.resolve("euler", step=0.5)
    assert isinstance(obj, Euler) and obj.step == 0.5
    assert reg.resolve("EULER").step == 0.1
    obj = reg.resolve(ExponentialKrylov, dim=3)  # classes need not be registered
    assert isinstance(obj, ExponentialKrylov) and obj.dim == 3
    instance = Euler(0.2)
    assert reg.resolve(instance) is instance
    with pytest.raises(TypeError, match="instance"):
        reg.resolve(instance, step=1.0)
    with pytest.raises(TypeError, match="integrator"):
        reg.resolve(None)
    with pytest.raises(ValueError, match="Did you mean 'euler'"):
        reg.resolve("eulerr")


def test_resolve_factory():
    reg = _fresh()
    reg.register("factory", lambda scale=1: ("made", scale))
    assert reg.resolve("factory", scale=2) == ("made", 2)


def test_name_of():
    reg = _fresh()
    reg.register("euler", Euler)

    def factory():
        return ExponentialKrylov()

    reg.register("krylov", factory)
    assert reg.name_of(Euler) == "euler"
    assert reg.name_of(Euler()) == "euler"
    assert reg.name_of(factory) == "krylov"
    assert reg.name_of(ExponentialKrylov) is None
    assert reg.name_of(ExponentialKrylov()) is None


def test_container_protocol_and_info():
    reg = _fresh()
    builtin = _builtin_class("Builtin")
    reg.register("b", builtin)
    reg.register("a", Euler)
    assert len(reg) == 2
    assert list(reg) == ["a", "b"]
    assert "A" in reg and "c" not in reg and 3 not in reg
    assert reg.items() == [("a", Euler), ("b", builtin)]
    assert reg.info() == [
        {
            "name": "a",
            "object": f"{__name__}.Euler",
            "origin": __name__,
            "builtin": False,
            "aliases": (),
        },
        {
            "name": "b",
            "object": "assignflow.fake.Builtin",
            "origin": "assignflow",
            "builtin": True,
            "aliases": (),
        },
    ]
    text = repr(reg)
    assert "integrator" in text and "'a'" in text and reg.group in text


def test_plural():
    assert Registry("loss").plural == "loss"
    assert Registry("graph").plural == "graphs"


# --------------------------------------------------------------------------- entry points
@pytest.fixture
def make_dist(tmp_path, monkeypatch):
    """Write a tiny distribution with entry points and put it on ``sys.path``."""

    def _drop_modules():
        for mod in [m for m in sys.modules if m.startswith(PLUGIN_MODULE)]:
            del sys.modules[mod]

    _drop_modules()

    def make(group: str, entries: dict[str, str], module_source: str = "") -> Path:
        (tmp_path / f"{PLUGIN_MODULE}.py").write_text(
            textwrap.dedent(module_source), encoding="utf-8"
        )
        info = tmp_path / f"{PLUGIN_MODULE}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {PLUGIN_DIST}\nVersion: 0.1\n", encoding="utf-8"
        )
        lines = [f"[{group}]"] + [f"{name} = {value}" for name, value in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        return tmp_path

    yield make
    _drop_modules()
    importlib.invalidate_caches()


PLUGIN_SOURCE = """
class MyIntegrator:
    def __init__(self, order=1):
        self.order = order

class Other:
    pass
"""


def test_entry_point_lazy_lookup(make_dist):
    reg = _fresh()
    make_dist(reg.group, {"my-integrator": f"{PLUGIN_MODULE}:MyIntegrator"}, PLUGIN_SOURCE)
    assert PLUGIN_MODULE not in sys.modules
    assert not reg._loaded  # nothing happened at construction
    obj = reg.resolve("my_integrator", order=3)  # first query triggers discovery
    assert type(obj).__name__ == "MyIntegrator" and obj.order == 3
    assert PLUGIN_MODULE in sys.modules
    assert reg.origin("my_integrator") == PLUGIN_DIST
    assert not reg.is_builtin("my_integrator")
    assert reg.name_of(obj) == "my_integrator"
    (record,) = reg.info()
    assert record == {
        "name": "my_integrator",
        "object": f"{PLUGIN_MODULE}.MyIntegrator",
        "origin": PLUGIN_DIST,
        "builtin": False,
        "aliases": (),
    }
    # loaded once: further queries and plain calls do not rescan
    assert reg.load_entry_points() == []
    assert reg.load_entry_points(reload=True) == ["my_integrator"]
    assert reg.names() == ["my_integrator"]


@pytest.mark.parametrize(
    "query",
    [
        lambda r: r.get("my_integrator"),
        lambda r: r.names(),
        lambda r: "my_integrator" in r,
        lambda r: list(r),
        lambda r: len(r),
        lambda r: r.items(),
        lambda r: r.info(),
        lambda r: r.name_of(object),
        lambda r: r.resolve(object()),
    ],
)
def test_every_query_triggers_discovery(make_dist, query):
    reg = _fresh()
    make_dist(reg.group, {"my_integrator": f"{PLUGIN_MODULE}:MyIntegrator"}, PLUGIN_SOURCE)
    reg.register("local", Euler)  # registering does not trigger discovery
    assert not reg._loaded
    query(reg)
    assert reg._loaded
    assert "my_integrator" in reg._entries


def test_broken_entry_points_warn(make_dist):
    reg = _fresh()
    make_dist(
        reg.group,
        {
            "good": f"{PLUGIN_MODULE}:MyIntegrator",
            "missing_module": "af_test_no_such_module_xyz:Thing",
            "missing_attr": f"{PLUGIN_MODULE}:DoesNotExist",
        },
        PLUGIN_SOURCE,
    )
    with pytest.warns(PluginWarning) as record:
        names = reg.names()
    assert names == ["good"]
    messages = [str(w.message) for w in record]
    assert any("missing_module" in m and "ModuleNotFoundError" in m for m in messages)
    assert any("missing_attr" in m and "AttributeError" in m for m in messages)
    assert all(PLUGIN_DIST in m for m in messages)
    with pytest.raises(ValueError, match="missing_attr"):
        reg.get("missing_attr")


def test_plugin_raising_on_import_warns(make_dist):
    reg = _fresh()
    make_dist(reg.group, {"boom": f"{PLUGIN_MODULE}:X"}, "raise RuntimeError('kaboom')\n")
    with pytest.warns(PluginWarning, match="kaboom"):
        assert "boom" not in reg


def test_plugin_cannot_shadow_builtin(make_dist):
    reg = _fresh()
    builtin = _builtin_class("Euler")
    reg.register("euler", builtin)
    make_dist(
        reg.group,
        {"euler": f"{PLUGIN_MODULE}:MyIntegrator", "other": f"{PLUGIN_MODULE}:Other"},
        PLUGIN_SOURCE,
    )
    with pytest.warns(PluginWarning, match="euler.*built-in"):
        assert reg.get("euler") is builtin
    assert reg.origin("euler") == "assignflow"
    assert reg.origin("other") == PLUGIN_DIST


def test_plugin_cannot_take_used_name(make_dist):
    reg = _fresh()
    reg.register("taken", Euler)
    make_dist(reg.group, {"taken": f"{PLUGIN_MODULE}:MyIntegrator"}, PLUGIN_SOURCE)
    with pytest.warns(PluginWarning, match="taken"):
        assert reg.get("taken") is Euler


def test_later_builtin_registration_wins_over_plugin(make_dist):
    reg = _fresh()
    make_dist(reg.group, {"euler": f"{PLUGIN_MODULE}:MyIntegrator"}, PLUGIN_SOURCE)
    assert reg.origin("euler") == PLUGIN_DIST
    builtin = _builtin_class("Euler")
    with pytest.warns(PluginWarning, match=PLUGIN_DIST):
        reg.register("euler", builtin)
    assert reg.get("euler") is builtin
    assert reg.origin("euler") == "assignflow"
    # rescanning does not bring the plugin back
    with pytest.warns(PluginWarning, match="built-in"):
        reg.load_entry_points(reload=True)
    assert reg.get("euler") is builtin


def test_reentrant_plugin_module(make_dist, monkeypatch):
    """A plugin module that queries and registers into the registry while loading."""
    reg = _fresh()
    monkeypatch.setattr(registry_module, "_TEST_REGISTRY", reg, raising=False)
    source = PLUGIN_SOURCE + textwrap.dedent(
        """
        import assignflow.registry as _r
        SEEN = _r._TEST_REGISTRY.names()  # must not recurse into discovery
        _r._TEST_REGISTRY.register("self_registered", Other)
        _r._TEST_REGISTRY.register("my_integrator", MyIntegrator)
        """
    )
    make_dist(reg.group, {"my_integrator": f"{PLUGIN_MODULE}:MyIntegrator"}, source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.names() == ["my_integrator", "self_registered"]
    assert sys.modules[PLUGIN_MODULE].SEEN == []
    # the entry point confirms the self-registration: origin is the distribution
    assert reg.origin("my_integrator") == PLUGIN_DIST
    assert reg.origin("self_registered") == PLUGIN_MODULE


def test_invalid_entry_point_name_warns(make_dist):
    reg = _fresh()
    make_dist(reg.group, {"bad.name.": f"{PLUGIN_MODULE}:Other"}, PLUGIN_SOURCE)
    with pytest.warns(PluginWarning, match="Invalid"):
        assert len(reg) == 0
