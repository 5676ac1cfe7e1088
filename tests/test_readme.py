"""The README and docs/ stay true: the settings reference is generated, links resolve, presets are documented."""

import ast
import re
from pathlib import Path

from imgproxy.config import reference
from imgproxy.presets import load_presets

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

#: A Markdown link's target: ``[text](target)``.
LINK = re.compile(r"\]\(([^)\s]+)\)")
#: A docs page named in prose or code: ``docs/URLS.md``.
DOCS_NAME = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)\b")


def test_the_settings_reference_is_the_generated_one():
    checked_in = (DOCS / "SETTINGS.md").read_text()
    assert checked_in == reference(), (
        "docs/SETTINGS.md is stale: run `make docs` (python -m imgproxy.config > docs/SETTINGS.md) and commit it")


def test_the_two_commands_come_first():
    head = README.read_text()[:600]
    assert "make run" in head and "make test" in head


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_every_preset_is_documented():
    text = "\n".join(page.read_text() for page in PAGES)
    for name in load_presets(ROOT / "config" / "presets.toml"):
        assert f"`{name}`" in text, name


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page`` (code blocks skipped)."""
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path) if path else page
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_every_docs_page_named_exists():
    missing = [f"{page.relative_to(ROOT)}: docs/{name}"
               for page in PAGES for name in DOCS_NAME.findall(page.read_text())
               if not (DOCS / name).exists()]
    assert not missing, missing


def test_the_readme_links_every_docs_page():
    linked = {Path(target.split("#")[0]).name for target in LINK.findall(README.read_text())}
    pages = {page.name for page in DOCS.glob("*.md")}
    assert pages <= linked, pages - linked


#: A test named in prose: ``tests/test_x.py`` or ``tests/test_x.py::test_name[param]``.
TEST_REF = re.compile(r"\btests/(test_\w+\.py)(?:::(\w+))?")


def _functions(module: Path) -> set[str]:
    """Names of every function (tests and methods included) defined in ``module``."""
    tree = ast.parse(module.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_test_named_exists():
    stale = []
    for page in PAGES:
        for module, name in TEST_REF.findall(page.read_text()):
            path = ROOT / "tests" / module
            if not path.exists() or (name and name not in _functions(path)):
                stale.append(f"{page.relative_to(ROOT)}: tests/{module}" + (f"::{name}" if name else ""))
    assert not stale, stale
