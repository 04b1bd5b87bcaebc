"""The bridge's import graph has no circle: each module imports only modules below it, never ``app``.

Parsed with ``ast`` (nothing is imported), so a back-import is caught even behind ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

BRIDGE = Path(__file__).resolve().parents[1] / "bridge"

# Lower layers first; a module may import only modules of a strictly lower layer (or none of the bridge's).
LAYERS: list[set[str]] = [
    {
        "config",
        "port_auth",
        "backoff",
        "faults",
        "files",
        "attachments",
        "history",
        "partial",
        "prompt_ledger",
        "deflate",
        "preview",
        "approvals",
        "gitinfo",
        "dialback",
    },
    {"frames", "state", "shimlink", "clients", "attention", "watchdog", "budget"},
    {"notice"},
    {"handlers", "server", "hypivisor_client"},
    {"app"},
    {"__main__"},
]


def _layer(module: str) -> int:
    for n, names in enumerate(LAYERS):
        if module in names:
            return n
    raise AssertionError(f"pi_socket/bridge/{module}.py is in no layer of this test: add it to LAYERS")


def _bridge_imports(path: Path) -> list[tuple[str, int]]:
    """(bridge module, line) for every import of a sibling module, at any depth of the file."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                mod = node.module
                names = [mod.split(".")[0]] if mod else [a.name for a in node.names]
            elif node.level == 0 and node.module and node.module.startswith("pi_socket.bridge."):
                names = [node.module.split(".")[2]]
            elif node.level == 0 and node.module == "pi_socket.bridge":
                names = [a.name for a in node.names]
            else:
                continue
            out += [(name, node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".")[2], node.lineno) for a in node.names if a.name.startswith("pi_socket.bridge.")]
    return out


def _modules() -> list[Path]:
    return sorted(p for p in BRIDGE.glob("*.py") if p.stem != "__init__")


def test_every_bridge_module_imports_only_lower_layers() -> None:
    problems = []
    for path in _modules():
        mine = _layer(path.stem)
        for name, line in _bridge_imports(path):
            if name == "__init__" or not (BRIDGE / f"{name}.py").exists():
                continue
            if _layer(name) >= mine:
                problems.append(f"{path.name}:{line} imports {name} (layer {_layer(name)} >= {mine})")
    assert not problems, "upward or sideways imports in pi_socket/bridge:\n" + "\n".join(problems)


def test_nothing_below_app_imports_app() -> None:
    for path in _modules():
        if path.stem in ("app", "__main__"):
            continue
        assert "app" not in {name for name, _ in _bridge_imports(path)}, f"{path.name} imports app"


def test_no_type_checking_back_imports() -> None:
    """``if TYPE_CHECKING:`` imports hide a circle from the interpreter; the bridge has none."""
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.If):
                test = node.test
                name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
                assert name != "TYPE_CHECKING", f"{path.name}:{node.lineno} has an `if TYPE_CHECKING:` import block"


def test_the_layer_check_sees_a_back_import(tmp_path: Path) -> None:
    """The parser finds relative, absolute and TYPE_CHECKING-guarded imports alike."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .app import Bridge\n"
        "import pi_socket.bridge.server\nfrom pi_socket.bridge import state\nfrom . import faults\n",
        encoding="utf-8",
    )
    assert sorted(n for n, _ in _bridge_imports(src)) == ["app", "faults", "server", "state"]
