"""The layer rule of docs/ARCHITECTURE.md, checked on every import in imgproxy/ and in bench/."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "imgproxy"

#: The folders under imgproxy/ are the layers (docs/ARCHITECTURE.md); higher may import lower.
#: A module directly under imgproxy/ is the shared vocabulary, the base layer, except the entry point.
LAYERS = {
    "cli": 5, "__main__": 5,
    "web": 4, "batch": 4,
    "variants": 3,
    "cache": 2, "stores": 2, "workers": 2,
    "render": 1,
}
BASE = 0
NOT_IN_RENDER = {"starlette", "uvicorn", "httpx", "httpcore", "aioboto3", "botocore", "aiohttp", "anyio"}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    here = list(path.relative_to(ROOT).with_suffix("").parts)  # imgproxy/... or bench/...
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


def _layer(part: str) -> int:
    return LAYERS.get(part, BASE)


def test_every_folder_is_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS) - {"__main__"}, folders ^ (set(LAYERS) - {"__main__"})


def test_imports_only_go_down():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        mine = _layer(_part(path))
        for name, line in _imports(path):
            pieces = name.split(".")
            if pieces[0] != "imgproxy" or len(pieces) < 2:
                continue
            if _layer(pieces[1]) > mine:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def _part_graph() -> dict[str, dict[str, str]]:
    """Part of imgproxy/ (a folder, or a module at the top) -> {part it imports: where}."""
    graph: dict[str, dict[str, str]] = {}
    for path in PACKAGE.rglob("*.py"):
        mine = _part(path)
        edges = graph.setdefault(mine, {})
        for name, line in _imports(path):
            pieces = name.split(".")
            if pieces[0] == "imgproxy" and len(pieces) > 1 and pieces[1] != mine:
                target = pieces[1]
                if (PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").exists():
                    edges.setdefault(target, f"{path.relative_to(ROOT)}:{line}")
    return graph


def _cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for target in graph.get(node, {}):
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for node in graph:
        cycle = visit(node, [])
        if cycle:
            return cycle
    return None


def test_the_parts_of_imgproxy_import_no_cycle():
    """Same-layer parts (web and batch; cache, stores and workers) may import each other, but
    never both ways round: the graph of folders and base modules is a DAG."""
    graph = _part_graph()
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(f"{a} ({graph[a][b]})" for a, b in itertools.pairwise(cycle))


def test_no_module_imports_a_private_name_from_another():
    wrong = []
    for path in [*PACKAGE.rglob("*.py"), *_bench_modules().values()]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                wrong += [f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}"
                          for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not wrong, "\n".join(wrong)


def test_render_imports_no_web_network_or_storage_library():
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in (PACKAGE / "render").rglob("*.py")
             for name, line in _imports(path) if name.split(".")[0] in NOT_IN_RENDER]
    assert not wrong, "\n".join(wrong)


def test_the_server_does_not_load_libvips():
    code = "import sys, imgproxy.web.app, imgproxy.cli; print('pyvips' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- bench/ ------------------------------------------------------------------

BENCH = ROOT / "bench"
#: Part of bench/ -> layer; a part may import a lower layer. Cases and profilers import no
#: sibling (a case imports only the harness); the harness and the report may import their own.
BENCH_LAYERS = {"__init__": 0, "harness": 1, "cases": 2, "report": 2, "profilers": 2, "__main__": 3, "soak": 3}
BENCH_SIBLINGS_ALLOWED = {"harness", "report"}


def _bench_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in BENCH.rglob("*.py") if not {".venv-thumbor", "work", ".sharp"} & set(p.relative_to(BENCH).parts)}


def _bench_part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def _bench_graph() -> dict[str, dict[str, int]]:
    """bench module -> {bench module it imports: line}; a name resolves to its longest module prefix."""
    modules = _bench_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for name, line in _imports(path):
            pieces = name.split(".")
            target = next((".".join(pieces[:n]) for n in range(len(pieces), 0, -1)
                           if ".".join(pieces[:n]) in modules), None)
            if target and target != module and pieces[0] == "bench":
                edges.setdefault(target, line)
    return graph


def test_every_bench_module_has_a_layer():
    parts = {_bench_part(m) for m in _bench_modules()}
    assert parts <= set(BENCH_LAYERS), parts - set(BENCH_LAYERS)


def test_bench_imports_only_go_down():
    """The harness imports no case, report or profiler; a case imports no other case; the report
    imports no case; only ``python -m bench`` (and ``bench.soak``) wire cases and report."""
    wrong = []
    for module, edges in _bench_graph().items():
        mine = _bench_part(module)
        for target, line in edges.items():
            theirs = _bench_part(target)
            same_ok = theirs == mine and (mine in BENCH_SIBLINGS_ALLOWED or target == f"bench.{mine}")
            if not same_ok and BENCH_LAYERS[theirs] >= BENCH_LAYERS[mine]:
                wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_bench_has_no_import_cycle():
    graph = {module: {target: str(line) for target, line in edges.items()} for module, edges in _bench_graph().items()}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)
