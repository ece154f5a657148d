"""Tests for :mod:`assignflow.registry`: names, lookups, entry points, crashes and threads."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import subprocess
import sys
import textwrap
import threading
import types
import uuid
import warnings
from pathlib import Path

import pytest

import assignflow as af
import assignflow.registry as registry_module
from assignflow.registry import PluginWarning, Registry, all_registries

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_MODULE = "af_test_plugin_xyz"
PLUGIN_DIST = "af-test-plugin-xyz"


def _fresh(kind: str = "integrator") -> Registry:
    """A registry with a unique, empty entry-point group."""
    return Registry(kind, group=f"assignflow.test_{uuid.uuid4().hex}")


class Euler:
    def __init__(self, step: float = 0.1) -> None:
        self.step = step


class Krylov:
    def __init__(self, dim: int = 10) -> None:
        self.dim = dim


# --------------------------------------------------------------------------- module
def test_module_imports_nothing_from_assignflow():
    tree = ast.parse(Path(registry_module.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "assignflow" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module.split(".")[0] != "assignflow"


def test_families_and_groups():
    regs = all_registries()
    assert list(regs) == ["graphs", "integrators", "losses", "gradient_estimators", "predictors"]
    for key, reg in regs.items():
        assert reg is getattr(registry_module, key)
        assert reg.group == f"assignflow.{key}"
    assert Registry("loss").group == "assignflow.losses"
    assert Registry("widget", group="x.y").group == "x.y"


def test_importing_assignflow_loads_no_plugin():
    """Built-ins register at import; entry points wait for the first query (so they come later)."""
    code = (
        "import assignflow.registry as r; "
        "print([reg._loaded for reg in r.all_registries().values()], len(r.integrators._entries))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("]")[0] == "[False, False, False, False, False"
    assert int(out.stdout.split("]")[1]) >= 4  # euler, exponential_krylov, ...


def test_builtins_are_registered_with_their_origin():
    assert af.registry.integrators.get("euler") is af.Euler
    assert af.registry.graphs.get("grid") is af.GridGraph
    assert af.registry.losses.get("kl") is af.KLLoss
    assert af.registry.gradient_estimators.get("finite_diff") is af.FiniteDiff
    for reg in all_registries().values():
        for record in reg.info():
            if record["object"].startswith("assignflow."):
                assert record["origin"] == "assignflow"


# --------------------------------------------------------------------------- register
def test_decorator_and_call_form_return_the_object():
    reg = _fresh()

    @reg.register("euler")
    class A:
        pass

    def make() -> str:
        return "made"

    assert reg.register("factory", make) is make
    assert reg.get("euler") is A and reg.get("factory") is make
    assert reg.resolve("factory") == "made"
    assert reg.names() == ["euler", "factory"]


def test_names_are_normalised():
    reg = _fresh()
    reg.register("  Exponential-Krylov ", Krylov)
    assert reg.names() == ["exponential_krylov"]
    for spelling in ["exponential_krylov", "Exponential-Krylov", " EXPONENTIAL-krylov "]:
        assert reg.get(spelling) is Krylov and spelling in reg


def test_first_registration_wins():
    reg = _fresh()
    reg.register("euler", Euler)
    reg.register("Euler", Euler)  # the same object again: nothing happens
    with pytest.raises(ValueError, match="euler"):
        reg.register("euler", Krylov)
    assert reg.get("euler") is Euler and len(reg) == 1


def test_builtin_names_cannot_be_taken():
    before = af.registry.integrators.names()
    with pytest.raises(ValueError, match="euler"):
        af.registry.integrators.register("euler", Krylov)
    with pytest.raises(ValueError, match="kl"):
        af.registry.losses.register("KL", Krylov)
    assert af.registry.integrators.names() == before
    assert af.registry.integrators.get("euler") is af.Euler


@pytest.mark.parametrize(
    ("name", "obj", "exc", "match"),
    [
        ("", Euler, ValueError, "name"),
        ("   ", Euler, ValueError, "name"),
        ("two words", Euler, ValueError, "two words"),
        ("bad.name.", Euler, ValueError, "name"),
        (3, Euler, TypeError, "names must be strings"),
        (None, Euler, TypeError, "names must be strings"),
        (Euler, None, TypeError, "names must be strings"),  # bare @register
        ("x", 42, TypeError, "classes and factories"),
    ],
)
def test_register_rejects(name, obj, exc, match):
    reg = _fresh()
    with pytest.raises(exc, match=match):
        reg.register(name, obj)
    assert len(reg) == 0


# --------------------------------------------------------------------------- lookup
def test_unknown_name_lists_known_names_and_the_closest():
    reg = _fresh()
    reg.register("euler", Euler)
    reg.register("exponential_krylov", Krylov)
    with pytest.raises(ValueError, match="integrator") as info:
        reg.get("eulr")
    message = str(info.value)
    assert "'eulr'" in message and "Did you mean 'euler'?" in message
    assert "'euler', 'exponential_krylov'" in message
    with pytest.raises(ValueError, match="Known losses: none"):
        _fresh("loss").get("nothing")
    with pytest.raises(TypeError, match="names must be strings"):
        reg.get(None)


@pytest.mark.parametrize(
    ("reg", "typo", "match"),
    [
        (af.registry.graphs, "gird", "Did you mean 'grid'"),
        (af.registry.integrators, "Eulr", "Did you mean 'euler'"),
        (af.registry.losses, "kll", "Did you mean 'kl'"),
        (af.registry.gradient_estimators, "finite-dif", "Did you mean 'finite_diff'"),
        (af.registry.graphs, "zzzz", "Known graphs: "),
        (af.registry.predictors, "zzzz", "Unknown predictor 'zzzz'"),
    ],
)
def test_global_registries_reject_unknown_names(reg, typo, match):
    with pytest.raises(ValueError, match=match):
        reg.get(typo)
    with pytest.raises(ValueError, match=match):
        reg.resolve(typo)


def test_resolve():
    reg = _fresh()
    reg.register("euler", Euler)
    assert reg.resolve("EULER", step=0.5).step == 0.5
    obj = reg.resolve(Krylov, dim=3)  # classes need not be registered
    assert isinstance(obj, Krylov) and obj.dim == 3
    instance = Euler(0.2)
    assert reg.resolve(instance) is instance
    with pytest.raises(TypeError, match="step"):
        reg.resolve(instance, step=1.0)
    with pytest.raises(TypeError, match="integrator"):
        reg.resolve(None)
    with pytest.raises(ValueError, match="Did you mean 'euler'"):
        reg.resolve("eulerr")


def test_resolve_passes_options_through():
    with pytest.raises(TypeError, match="bogus"):
        af.registry.integrators.resolve("euler", bogus=1)
    with pytest.raises(ValueError, match="step_size"):
        af.registry.integrators.resolve("euler", step_size=-1)


def test_name_of():
    reg = _fresh()
    reg.register("euler", Euler)

    def factory():
        return Krylov()

    reg.register("krylov", factory)
    assert reg.name_of(Euler) == "euler" and reg.name_of(Euler()) == "euler"
    assert reg.name_of(factory) == "krylov"
    assert reg.name_of(Krylov) is None and reg.name_of(Krylov()) is None
    assert af.registry.integrators.name_of(af.Euler()) == "euler"


def test_container_protocol_info_and_origin():
    reg = _fresh()
    reg.register("b", Krylov)
    reg.register("a", Euler)
    assert len(reg) == 2 and list(reg) == ["a", "b"]
    assert "A" in reg and "c" not in reg and 3 not in reg
    origin = __name__.partition(".")[0]
    assert reg.info() == [
        {"name": "a", "object": f"{__name__}.Euler", "origin": origin},
        {"name": "b", "object": f"{__name__}.Krylov", "origin": origin},
    ]
    assert reg.origin("a") == origin
    with pytest.raises(ValueError, match="Unknown integrator"):
        reg.origin("nope")
    assert "integrator" in repr(reg) and reg.group in repr(reg)


# --------------------------------------------------------------------------- entry points
@pytest.fixture
def make_dist(tmp_path, monkeypatch):
    """Write a distribution with entry points into ``tmp_path`` and put it on ``sys.path``."""

    def drop_modules():
        for name in [m for m in sys.modules if m.startswith(PLUGIN_MODULE)]:
            del sys.modules[name]

    drop_modules()

    def make(group: str, entries: dict[str, str], source: str = "") -> Path:
        (tmp_path / f"{PLUGIN_MODULE}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = tmp_path / f"{PLUGIN_MODULE}-0.1.dist-info"
        info.mkdir()
        metadata = f"Metadata-Version: 2.1\nName: {PLUGIN_DIST}\nVersion: 0.1\n"
        (info / "METADATA").write_text(metadata, encoding="utf-8")
        lines = [f"[{group}]"] + [f"{name} = {value}" for name, value in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        return tmp_path

    yield make
    drop_modules()
    importlib.invalidate_caches()


PLUGIN_SOURCE = """
class MyIntegrator:
    def __init__(self, order=1):
        self.order = order

class Other:
    pass

NOT_CALLABLE = 3
"""


def test_entry_points_load_lazily_once(make_dist):
    reg = _fresh()
    make_dist(reg.group, {"my-integrator": f"{PLUGIN_MODULE}:MyIntegrator"}, PLUGIN_SOURCE)
    reg.register("local", Euler)  # registering loads nothing
    assert PLUGIN_MODULE not in sys.modules
    obj = reg.resolve("my_integrator", order=3)
    assert type(obj).__name__ == "MyIntegrator" and obj.order == 3
    assert reg.origin("my_integrator") == PLUGIN_DIST
    assert reg.name_of(obj) == "my_integrator"
    assert {"name": "my_integrator", "object": f"{PLUGIN_MODULE}.MyIntegrator",
            "origin": PLUGIN_DIST} in reg.info()  # fmt: skip
    del sys.modules[PLUGIN_MODULE]
    assert reg.names() == ["local", "my_integrator"]
    assert PLUGIN_MODULE not in sys.modules  # loaded once, not again


@pytest.mark.parametrize(
    "query",
    [
        lambda r: r.get("my_integrator"),
        lambda r: r.origin("my_integrator"),
        lambda r: r.names(),
        lambda r: "my_integrator" in r,
        lambda r: list(r),
        lambda r: len(r),
        lambda r: r.info(),
        lambda r: r.name_of(object),
        lambda r: r.resolve("my_integrator"),
    ],
)
def test_every_query_loads_the_entry_points(make_dist, query):
    reg = _fresh()
    make_dist(reg.group, {"my_integrator": f"{PLUGIN_MODULE}:MyIntegrator"}, PLUGIN_SOURCE)
    query(reg)
    assert "my_integrator" in reg._entries


def test_broken_entry_points_are_skipped_with_a_warning(make_dist):
    reg = _fresh()
    entries = {
        "good": f"{PLUGIN_MODULE}:MyIntegrator",
        "missing_module": "af_test_no_such_module_xyz:Thing",
        "missing_attr": f"{PLUGIN_MODULE}:DoesNotExist",
        "not_callable": f"{PLUGIN_MODULE}:NOT_CALLABLE",
        "bad.name.": f"{PLUGIN_MODULE}:Other",
    }
    make_dist(reg.group, entries, PLUGIN_SOURCE)
    with pytest.warns(PluginWarning) as record:
        assert reg.names() == ["good"]
    messages = [str(w.message) for w in record]
    assert len(messages) == 4 and all(PLUGIN_DIST in m for m in messages)
    assert any("missing_module" in m and "ModuleNotFoundError" in m for m in messages)
    assert any("missing_attr" in m and "AttributeError" in m for m in messages)
    assert any("not_callable" in m and "not a class" in m for m in messages)
    assert any("bad.name." in m and "invalid name" in m for m in messages)
    with pytest.raises(ValueError, match="missing_attr"):
        reg.get("missing_attr")


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        ("raise RuntimeError('kaboom')", "kaboom"),
        ("import sys; sys.exit(3)", "SystemExit"),
        ("raise SystemExit('bye')", "bye"),
        ("raise GeneratorExit", "GeneratorExit"),
        ("class Odd(BaseException): pass\nraise Odd('odd')", "odd"),
        ("raise MemoryError", "MemoryError"),
        ("def f(): f()\nf()", "RecursionError"),
    ],
)
def test_plugin_raising_anything_at_import_is_skipped(make_dist, statement, shown):
    reg = _fresh()
    make_dist(
        reg.group,
        {"boom": f"{PLUGIN_MODULE}:X", "fine": "fractions:Fraction"},
        statement + "\n",
    )
    with pytest.warns(PluginWarning, match=shown):
        assert reg.names() == ["fine"]
    assert PLUGIN_MODULE not in sys.modules


def test_keyboard_interrupt_goes_through_and_the_next_query_loads_again(make_dist, tmp_path):
    reg = _fresh()
    flag = tmp_path / "interrupt"
    flag.touch()
    source = f"""
        import os
        if os.path.exists({str(flag)!r}):
            os.remove({str(flag)!r})
            raise KeyboardInterrupt
        class MyIntegrator:
            pass
        """
    make_dist(reg.group, {"mine": f"{PLUGIN_MODULE}:MyIntegrator"}, source)
    with pytest.raises(KeyboardInterrupt):
        reg.names()
    assert reg.names() == ["mine"]


def test_plugins_cannot_take_a_used_name(make_dist):
    reg = _fresh()
    reg.register("taken", Euler)
    entries = {"taken": f"{PLUGIN_MODULE}:MyIntegrator", "other": f"{PLUGIN_MODULE}:Other"}
    make_dist(reg.group, entries, PLUGIN_SOURCE)
    origin = __name__.partition(".")[0]
    with pytest.warns(PluginWarning, match=f"taken.*{origin}"):
        assert reg.get("taken") is Euler
    assert reg.origin("taken") == origin and reg.origin("other") == PLUGIN_DIST


def test_two_plugins_asking_for_one_name(make_dist):
    reg = _fresh()
    entries = {"same": f"{PLUGIN_MODULE}:MyIntegrator"}
    make_dist(reg.group, entries, PLUGIN_SOURCE)
    real = importlib.metadata.entry_points
    second = importlib.metadata.EntryPoint("same", f"{PLUGIN_MODULE}:Other", reg.group)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.metadata, "entry_points", lambda **kw: [*real(**kw), second])
        with pytest.warns(PluginWarning, match="taken"):
            assert reg.get("same").__name__ == "MyIntegrator"
    assert reg.origin("same") == PLUGIN_DIST


def test_unreadable_metadata_warns(monkeypatch):
    def broken(**kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(importlib.metadata, "entry_points", broken)
    reg = _fresh()
    reg.register("a", Euler)
    with pytest.warns(PluginWarning, match="disk on fire"):
        assert reg.names() == ["a"]


def test_plugin_that_registers_itself_and_queries_while_loading(make_dist, monkeypatch):
    reg = _fresh()
    monkeypatch.setattr(registry_module, "_TEST_REGISTRY", reg, raising=False)
    source = PLUGIN_SOURCE + textwrap.dedent(
        """
        import assignflow.registry as _r
        SEEN = _r._TEST_REGISTRY.names()  # a query while loading: no recursion, no deadlock
        _r._TEST_REGISTRY.register("self_registered", Other)
        _r._TEST_REGISTRY.register("my_integrator", MyIntegrator)
        """
    )
    make_dist(reg.group, {"my_integrator": f"{PLUGIN_MODULE}:MyIntegrator"}, source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.names() == ["my_integrator", "self_registered"]
    assert sys.modules[PLUGIN_MODULE].SEEN == []
    assert reg.origin("my_integrator") == PLUGIN_DIST  # the entry point names the distribution
    assert reg.origin("self_registered") == PLUGIN_MODULE


# --------------------------------------------------------------------------- threads
def test_lookup_while_another_thread_loads_waits_for_the_plugin(make_dist, monkeypatch):
    sync = types.ModuleType("af_test_sync_xyz")
    sync.started, sync.release = threading.Event(), threading.Event()
    monkeypatch.setitem(sys.modules, "af_test_sync_xyz", sync)
    source = PLUGIN_SOURCE + "import af_test_sync_xyz as s\ns.started.set()\ns.release.wait(30)\n"
    reg = _fresh()
    make_dist(reg.group, {"slow": f"{PLUGIN_MODULE}:MyIntegrator"}, source)
    results: dict[str, object] = {}

    def load():
        results["loader"] = reg.get("slow").__name__

    def look(key, query):
        results[key] = query()

    loader = threading.Thread(target=load)
    loader.start()
    assert sync.started.wait(30)  # the loader is inside the plugin's import now
    lookers = [
        threading.Thread(target=look, args=("in", lambda: "slow" in reg)),
        threading.Thread(target=look, args=("names", reg.names)),
        threading.Thread(target=look, args=("get", lambda: reg.get("slow").__name__)),
        threading.Thread(target=look, args=("len", lambda: len(reg))),
    ]
    for t in lookers:
        t.start()
    sync.release.set()
    for t in [loader, *lookers]:
        t.join(30)
        assert not t.is_alive()
    assert results == {
        "loader": "MyIntegrator",
        "in": True,
        "names": ["slow"],
        "get": "MyIntegrator",
        "len": 1,
    }


def test_concurrent_first_queries_load_each_plugin_once(make_dist):
    reg = _fresh()
    source = PLUGIN_SOURCE + "import itertools\nCOUNT = itertools.count()\n"
    make_dist(reg.group, {"p": f"{PLUGIN_MODULE}:MyIntegrator"}, source)
    barrier = threading.Barrier(8)
    seen = []

    def query():
        barrier.wait(30)
        seen.append(reg.get("p"))

    threads = [threading.Thread(target=query) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(seen) == 8 and all(obj is seen[0] for obj in seen)


def test_concurrent_registration_keeps_one_winner():
    reg = _fresh()
    classes = [type(f"C{k}", (), {}) for k in range(16)]
    barrier = threading.Barrier(len(classes))
    outcome = []

    def register(cls):
        barrier.wait(30)
        try:
            reg.register("shared", cls)
            outcome.append(cls)
        except ValueError:
            pass

    threads = [threading.Thread(target=register, args=(c,)) for c in classes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcome) == 1 and reg.get("shared") is outcome[0]


# --------------------------------------------------------------------------- the host process
HOSTILE_SOURCE = """
import sys
sys.exit(3)
"""

GREEDY_SOURCE = """
class Fake:
    pass
"""


def test_cli_survives_hostile_plugins(tmp_path):
    """A plugin calling sys.exit at import and one claiming built-in names: exit code 0."""
    for module, source in [("af_hostile_xyz", HOSTILE_SOURCE), ("af_greedy_xyz", GREEDY_SOURCE)]:
        (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
    info = tmp_path / "af_hostile_xyz-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: af-hostile-xyz\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[assignflow.integrators]\nexiter = af_hostile_xyz:Thing\neuler = af_greedy_xyz:Fake\n"
        "[assignflow.graphs]\ngrid = af_greedy_xyz:Fake\nfake_graph = af_greedy_xyz:Fake\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    proc = subprocess.run(
        [sys.executable, "-m", "assignflow", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.startswith("  ")}
    assert "exiter" not in lines
    assert "af_greedy_xyz" not in lines["euler"] and "[assignflow]" in lines["euler"]
    assert "[assignflow]" in lines["grid"]
    assert "[af-hostile-xyz]" in lines["fake_graph"]
    assert "SystemExit" in proc.stderr and "PluginWarning" in proc.stderr
    assert "Traceback" not in proc.stderr
