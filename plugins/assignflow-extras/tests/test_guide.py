"""The plugin guide ``docs/plugins.md`` and this plugin's README run as written; the
guide's package installs with pip.

Needs the example plugin installed (the guide uses its names), like the other tests
of this directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GUIDE = ROOT / "docs" / "plugins.md"
MODULE_MARK = "# my_plugin.py"


README = ROOT / "plugins" / "assignflow-extras" / "README.md"


def _blocks(language: str, path: Path = GUIDE) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_the_guide_has_its_code_blocks():
    assert len(_blocks("python")) >= 10 and len(_blocks("toml")) == 1


def test_every_python_block_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "plugins_guide"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated call in the guide
        for k, block in enumerate(_blocks("python")):
            try:
                exec(compile(block, f"{GUIDE.name}[python block {k}]", "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"python block {k} of {GUIDE.name} fails: {exc!r}\n{block}")


def _offline_build_possible() -> bool:
    """Whether setuptools builds wheels offline (``wheel`` installed, or setuptools 70.1+)."""
    import importlib.util

    import setuptools

    version = tuple(int(p) for p in re.findall(r"\d+", setuptools.__version__)[:2])
    return importlib.util.find_spec("wheel") is not None or version >= (70, 1)


def test_the_readme_runs():
    (block,) = _blocks("python", README)
    namespace: dict = {"__name__": "plugin_readme"}
    exec(compile(block, README.name, "exec"), namespace)
    assert namespace["labels"].shape == (200,)


@pytest.fixture(scope="module")
def guide_package(tmp_path_factory):
    """The package of the guide's section 1, installed with pip into a directory."""
    if not _offline_build_possible():
        pytest.skip("building offline needs the 'wheel' package or setuptools >= 70.1")
    root = tmp_path_factory.mktemp("guide")
    pkg, site = root / "my-assignflow-plugin", root / "site"
    pkg.mkdir()
    (toml,) = _blocks("toml")
    (pkg / "pyproject.toml").write_text(toml, encoding="utf-8")
    module = [b for b in _blocks("python") if b.startswith(MODULE_MARK)]
    (pkg / "my_plugin.py").write_text("\n\n".join(module), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--target", str(site), str(pkg)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return site


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_guide_package_is_discovered(guide_package):
    proc = _run(guide_package, "-m", "assignflow", "plugins")
    assert proc.returncode == 0 and "PluginWarning" not in proc.stderr, proc.stderr
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.startswith("  ")}
    for name, obj in [
        ("epsilon", "my_plugin.EpsilonGraph"),
        ("brier", "my_plugin.BrierLoss"),
        ("heun", "my_plugin.Heun"),
        ("logit_differences", "my_plugin.LogitDifferences"),
    ]:
        assert obj in lines[name] and "[my-assignflow-plugin]" in lines[name]


def test_the_guide_package_works_by_name(guide_package):
    code = """
import numpy as np
import assignflow as af
X = np.random.default_rng(0).random((6, 5, 3))
g = af.registry.graphs.resolve("epsilon", X=X, radius=0.6)
sim = af.SimilarityOperator(af.Weights.uniform(g), X.reshape(30, 3), rho=0.5)
flow = af.LinearizedAssignmentFlow(sim, T=1.0)
res = flow.solve("heun")
assert res.stats.integrator == "heun"
loss = af.registry.losses.resolve("brier", labels=res.labels)
assert af.registry.losses.name_of(loss) == "brier"
print("ok", g.n_nodes)
"""
    proc = _run(guide_package, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "30"]
