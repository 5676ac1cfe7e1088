"""The layer rule of docs/ARCHITECTURE.md, checked on every import in imgproxy/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "imgproxy"

#: Top-level module or package under imgproxy/ -> layer; higher may import lower.
LAYERS = {
    "web": 4, "app": 4, "cli": 4, "warm": 4, "demo": 4, "doctor": 4, "__main__": 4, "consume": 4, "progress": 4,
    "ops": 4, "put": 4,
    "services": 3, "variants": 3, "fanout": 3, "ingest": 3,
    "cache": 2, "stores": 2, "workers": 2, "clients": 2, "queue": 2,
    "render": 1,
    "errors": 0, "formats": 0, "presets": 0, "config": 0, "signing": 0, "urls": 0,
    "caching": 0, "keys": 0, "metrics": 0, "__init__": 0, "modifiers": 0, "srcset": 0,
}
NOT_IN_RENDER = {"starlette", "uvicorn", "httpx", "httpcore", "aioboto3", "botocore", "aiohttp", "anyio"}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    here = ["imgproxy", *path.relative_to(PACKAGE).with_suffix("").parts]
    if here[-1] == "__init__":
        here = here[:-1]
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
    return found


def test_every_module_has_a_layer():
    parts = {_part(p) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_imports_only_go_down():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        mine = LAYERS[_part(path)]
        for name, line in _imports(path):
            pieces = name.split(".")
            if pieces[0] != "imgproxy" or len(pieces) < 2 or pieces[1] not in LAYERS:
                continue
            if LAYERS[pieces[1]] > mine:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_render_imports_no_web_network_or_storage_library():
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in (PACKAGE / "render").rglob("*.py")
             for name, line in _imports(path) if name.split(".")[0] in NOT_IN_RENDER]
    assert not wrong, "\n".join(wrong)


def test_the_server_does_not_load_libvips():
    code = "import sys, imgproxy.app, imgproxy.cli; print('pyvips' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
