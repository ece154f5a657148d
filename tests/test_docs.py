"""The documentation as a test: code blocks run, project files agree, docstrings validate.

Every fenced ```` ```python ```` block of ``README.md`` and ``docs/*.md`` and every
``.. code-block:: python`` of ``docs/*.rst`` runs, page by page, in order, in a fresh
namespace and a temporary working directory (so blocks may write files). A block that
genuinely cannot run here (it needs a cluster, say) is preceded by the invisible marker
``<!-- docs-test: skip (reason) -->`` (Markdown) or ``.. docs-test: skip (reason)``
(reStructuredText).
"""

from __future__ import annotations

import importlib.metadata
import re
import runpy
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pytest
import tomllib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import assignflow as af

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))

import check_docstrings  # noqa: E402  (docs/check_docstrings.py)

PAGES = sorted(
    [ROOT / "README.md", *DOCS.glob("*.md"), *DOCS.glob("*.rst")],
    key=lambda p: str(p.relative_to(ROOT)),
)

#: pages whose code needs a package that the test run may not have: page -> module;
#: they run when it is importable (the plugin guide uses the example plugin's names and
#: is also run by plugins/assignflow-extras/tests/test_guide.py, with the plugin installed)
NEEDS: dict[str, str] = {"docs/plugins.md": "assignflow_extras"}

_SKIP_MD = re.compile(r"^\s*<!--\s*docs-test:\s*skip\b.*-->\s*$")
_SKIP_RST = re.compile(r"^\s*\.\.\s+docs-test:\s*skip\b")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_RST_CODE = re.compile(r"^(?P<indent>\s*)\.\.\s+(code-block|code|sourcecode)::\s*(?P<lang>\S+)")
_PYTHON = {"python", "py", "python3", "{code-block} python", "{code} python", "{code-cell} python"}


@dataclass(frozen=True)
class Block:
    """One code block of a page: its first line number, source and skip reason."""

    line: int
    source: str
    skip: str | None = None


def _previous_nonblank(lines: list[str], i: int) -> str:
    for j in range(i - 1, -1, -1):
        if lines[j].strip():
            return lines[j]
    return ""


def markdown_blocks(text: str) -> list[Block]:
    """Return the Python blocks of a Markdown (MyST) page.

    Parameters
    ----------
    text : str
        The page.

    Returns
    -------
    list of Block
        The fenced blocks whose info string names Python, in page order.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        info = " ".join(m["info"].split())
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            # drop the fence's own indentation (list items), keep the code's
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        if info in _PYTHON:
            marker = _previous_nonblank(lines, i)
            skip = marker if _SKIP_MD.match(marker) else None
            blocks.append(Block(i + 2, "\n".join(body) + "\n", skip))
        i = j + 1
    return blocks


def rst_blocks(text: str) -> list[Block]:
    """Return the ``.. code-block:: python`` blocks of a reStructuredText page.

    Parameters
    ----------
    text : str
        The page.

    Returns
    -------
    list of Block
        The blocks, dedented, in page order.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    for i, line in enumerate(lines):
        m = _RST_CODE.match(line)
        if not m or m["lang"] not in {"python", "py", "python3"}:
            continue
        indent = len(m["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith(":"):  # directive options
            j += 1
        start = j
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            body.append(lines[j])
            j += 1
        marker = _previous_nonblank(lines, i)
        skip = marker if _SKIP_RST.match(marker) else None
        blocks.append(Block(start + 1, textwrap.dedent("\n".join(body)).strip() + "\n", skip))
    return blocks


def page_blocks(page: Path) -> list[Block]:
    """Return the Python code blocks of a page, by its suffix.

    Parameters
    ----------
    page : pathlib.Path
        A ``.md`` or ``.rst`` file.

    Returns
    -------
    list of Block
        Its Python blocks in page order.
    """
    text = page.read_text(encoding="utf-8")
    return rst_blocks(text) if page.suffix == ".rst" else markdown_blocks(text)


# -- the collector itself ---------------------------------------------------------


def test_markdown_blocks_finds_python_fences_and_skip_markers():
    text = (
        "intro\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n\n"
        "<!-- docs-test: skip (needs a cluster) -->\n\n```python\nconnect()\n```\n"
        "- item\n\n  ```python\n  def f():\n      return 2\n  ```\n"
        "```python\nif x:\n    y = 3\n```\n"
    )
    blocks = markdown_blocks(text)
    assert [b.source for b in blocks] == [
        "x = 1\n",
        "connect()\n",
        "def f():\n    return 2\n",
        "if x:\n    y = 3\n",
    ]
    assert [b.skip is not None for b in blocks] == [False, True, False, False]
    assert blocks[0].line == 4


def test_rst_blocks_dedents_and_honours_skip_markers():
    text = (
        "Title\n\n.. code-block:: python\n   :caption: c\n\n   a = 1\n\n   b = a\n\ntext\n\n"
        ".. docs-test: skip (no display)\n\n.. code-block:: python\n\n   show()\n"
    )
    blocks = rst_blocks(text)
    assert [b.source for b in blocks] == ["a = 1\n\nb = a\n", "show()\n"]
    assert [b.skip is not None for b in blocks] == [False, True]


def test_every_page_is_collected():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {"README.md", "docs/guide.md", "docs/index.rst", "docs/install.md"} <= names
    # the pages with code have some blocks: a broken collector would make this vacuous
    runnable = {str(p.relative_to(ROOT)) for p in RUNNABLE}
    assert {"README.md", "docs/guide.md", "docs/index.rst", "docs/install.md"} <= runnable


# -- running the pages ------------------------------------------------------------


RUNNABLE = [p for p in PAGES if any(b.skip is None for b in page_blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(page, tmp_path, monkeypatch):
    rel = str(page.relative_to(ROOT))
    if rel in NEEDS:
        pytest.importorskip(NEEDS[rel], reason=f"{rel} needs {NEEDS[rel]} installed")
    blocks = [b for b in page_blocks(page) if b.skip is None]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASSIGNFLOW_NUM_THREADS", "2")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for block in blocks:
            code = compile(block.source, f"{rel}:{block.line}", "exec")
            try:
                exec(code, namespace)
            except Exception as exc:
                raise AssertionError(
                    f"the code block at {rel}:{block.line} fails: {type(exc).__name__}: {exc}"
                ) from exc
    finally:
        plt.close("all")


# -- one version ------------------------------------------------------------------


def test_version_has_one_source():
    from assignflow._version import __version__

    assert af.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", __version__)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" in pyproject["project"]["dynamic"]
    assert "version" not in pyproject["project"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "assignflow._version.__version__"}
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^version:\s*['\"]?([^'\"\s]+)", cff, re.M)[1] == __version__
    try:
        installed = importlib.metadata.version("assignflow")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        installed = __version__
    assert installed == __version__


def test_cli_version_agrees():
    out = subprocess.run(
        [sys.executable, "-m", "assignflow", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert out.stdout.strip() == f"assignflow {af.__version__}"


def test_docs_release_agrees():
    pytest.importorskip("sphinx")
    conf = runpy.run_path(str(DOCS / "conf.py"))
    assert conf["release"] == af.__version__
    assert conf["version"] == ".".join(af.__version__.split(".")[:2])


# -- project files ------------------------------------------------------------------


def test_license_is_bsd3():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "assignflow developers" in text
    assert "Neither the name of the copyright holder nor the names of its" in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == {"text": "BSD-3-Clause"}


def test_citation_cff_names_software_and_paper():
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert re.search(r"^type: software$", cff, re.M)
    assert "preferred-citation:" in cff
    assert "doi: 10.1007/s10851-022-01132-9" in cff
    assert "Learning Linearized Assignment Flows for Image Labeling" in cff
    for author in ("Zeilmann", "Petra", "Schnörr"):
        assert f"family-names: {author}" in cff


def test_changelog_sections():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert headings[0] == "Unreleased"
    assert af.__version__ in headings or "Unreleased" in headings


def test_py_typed_is_shipped():
    assert (Path(af.__file__).parent / "py.typed").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["assignflow"]


#: files that still cite the old specification by name; their owners replace the
#: references by the docs' math page (docs/math.md) — then drop them from this set
_PENDING_REFERENCES = frozenset(
    {
        "assignflow/classifier.py",
    }
)


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # pragma: no cover - not a checkout
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".rst", ".txt", ".toml", ".cff", ".cfg", ".yml", ".yaml", ""}
    return [ROOT / f for f in out if Path(f).suffix in suffixes and (ROOT / f).is_file()]


def test_no_reference_to_files_outside_the_repository():
    needles = ("MATH" + ".md", "shared" + "/")  # split so this file does not match itself
    offenders = []
    for path in _tracked_text_files():
        rel = str(path.relative_to(ROOT))
        if rel in _PENDING_REFERENCES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{rel}: {n}" for n in needles if n in text]
    assert not offenders


# -- the API reference and its links --------------------------------------------------


def test_api_reference_lists_every_public_name():
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   ([A-Za-z_][\w.]*)$", text, re.M))
    modules = {"datasets", "plotting", "registry"}
    missing = [n for n in af.__all__ if n not in listed and n not in modules | {"__version__"}]
    for name in modules:
        mod = getattr(af, name)
        public = getattr(mod, "__all__", None)
        if public is not None:  # its functions and classes (data such as registries in prose)
            missing += [
                f"{name}.{n}"
                for n in public
                if callable(getattr(mod, n)) and f"{name}.{n}" not in listed
            ]
    assert not missing


def test_offline_inventories_are_up_to_date():
    make = runpy.run_path(str(DOCS / "_inventories" / "make_inventories.py"))
    for key in make["INVENTORIES"]:
        path = DOCS / "_inventories" / f"{key}.inv"
        assert path.read_bytes() == make["render"](key), f"run make_inventories.py ({key})"


def test_intersphinx_is_offline_and_resolves_the_aliases():
    import posixpath

    pytest.importorskip("sphinx")

    from sphinx.util.inventory import InventoryFile

    conf = runpy.run_path(str(DOCS / "conf.py"))
    names: set[str] = set()
    for key, (url, inv) in conf["intersphinx_mapping"].items():
        assert url.startswith("https://")
        path = Path(inv)
        assert path.is_file() and path.is_relative_to(DOCS), key  # a file, never a URL
        with path.open("rb") as f:
            data = InventoryFile.load(f, url, posixpath.join)
        items = data.data if hasattr(data, "data") else data
        names |= {name for entries in items.values() for name in entries}
    for alias, target in conf["numpydoc_xref_aliases"].items():
        m = re.fullmatch(r"(?::\w+:`)?~?([\w.]+)`?", target)
        if m is None:  # a role with a title or a term, e.g. :term:`python:mapping`
            m = re.fullmatch(r":term:`\w+:(\w+)`", target)
        assert m is not None, alias
        name = m[1]
        assert name in names or name.startswith("assignflow."), (alias, target)
    assert "sphinx-mathjax-offline" in conf["extensions"]


# -- numpydoc validation ------------------------------------------------------------------


@pytest.mark.parametrize("module", check_docstrings.CLEAN_MODULES)
def test_docstrings_validate(module):
    pytest.importorskip("numpydoc")
    found = check_docstrings.violations().get(module, [])
    assert not [f"{path}: {code} {msg}" for path, code, msg in found]


def test_docstring_checker_finds_violations():
    # the checker is not vacuous: a function without Parameters is reported
    def bad(x):
        """Do something."""
        return x

    pytest.importorskip("numpydoc")
    from numpydoc.validate import validate

    mod = sys.modules[__name__]
    mod._bad_for_check = bad
    bad.__module__, bad.__qualname__ = __name__, "_bad_for_check"
    codes = {code for code, _ in validate(f"{__name__}._bad_for_check")["errors"]}
    assert {"PR01", "RT01"} <= codes & check_docstrings.CHECKS
    paths = [p for p, _ in check_docstrings.public_objects()]
    assert "assignflow.plotting.plot_history" in paths
    assert "assignflow.flows.LinearizedAssignmentFlow.solve" in paths
