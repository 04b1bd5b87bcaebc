"""The shim bundle pi loads (pi_socket/shimbuild.py): it must be built from the sources in src/."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from pi_socket import shimbuild
from pi_socket.__main__ import main as cli


def _tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.ts").write_text("export default function () {}\n")
    (src / "util.ts").write_text("export const x = 1;\n")
    return src


def test_the_committed_bundle_is_built_from_the_committed_sources():
    assert shimbuild.stale_reason() is None, "run `python -m pi_socket build-shim` and commit pi_socket/extension/dist"


def test_the_manifest_loads_the_bundle_and_the_bundle_carries_no_machine_path():
    manifest = json.loads((shimbuild.EXTENSION_DIR / "package.json").read_text())
    assert manifest["pi"]["extensions"] == ["./dist/pi-socket.js"]
    text = shimbuild.BUNDLE.read_text()
    assert "// src/index.ts" in text and "// src/child.ts" in text  # regions name their source for readers
    assert str(shimbuild.EXTENSION_DIR) not in text and "/home/" not in text and "/root/" not in text


def test_the_digest_changes_with_any_source_byte_or_name(tmp_path):
    src = _tree(tmp_path)
    first = shimbuild.sources_digest(src)
    assert shimbuild.sources_digest(src) == first
    (src / "util.ts").write_text("export const x = 2;\n")
    second = shimbuild.sources_digest(src)
    assert second != first
    (src / "util.ts").rename(src / "other.ts")
    assert shimbuild.sources_digest(src) not in (first, second)


def test_a_stale_missing_or_foreign_bundle_is_named(tmp_path):
    src = _tree(tmp_path)
    bundle = tmp_path / "pi-socket.js"
    assert "missing" in shimbuild.stale_reason(bundle, src)
    bundle.write_text("// hand-written\n")
    assert "no sources digest" in shimbuild.stale_reason(bundle, src)
    bundle.write_text(shimbuild.banner(shimbuild.sources_digest(src)) + "\ncode\n")
    assert shimbuild.stale_reason(bundle, src) is None
    (src / "index.ts").write_text("export default function () { return 1; }\n")
    assert "other sources" in shimbuild.stale_reason(bundle, src)


def test_check_exits_1_and_says_how_to_fix_when_stale(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shimbuild, "BUNDLE", tmp_path / "none.js")
    monkeypatch.setattr(
        shimbuild, "stale_reason", lambda: f"{tmp_path / 'none.js'} is missing or has no sources digest"
    )
    assert cli(["build-shim", "--check"]) == 1
    assert "python -m pi_socket build-shim" in capsys.readouterr().out


def test_build_without_esbuild_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(shimbuild, "find_esbuild", lambda: None)
    assert cli(["build-shim"]) == 1
    assert "esbuild not found" in capsys.readouterr().out


def test_rebuilding_gives_the_committed_bundle_byte_for_byte(tmp_path):
    """esbuild comes with Pi-DE's npm install (`make test` runs it first); flags or versions that drift show here."""
    if shimbuild.find_esbuild() is None:
        pytest.skip("esbuild not installed (npm ci in pi_de)")
    out = shimbuild.build(tmp_path / "pi-socket.js")
    assert out.read_bytes() == shimbuild.BUNDLE.read_bytes(), "run `python -m pi_socket build-shim` and commit it"


def test_the_bundle_runs_under_node_and_exports_the_extension_factory(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not on PATH")
    probe = tmp_path / "probe.mjs"
    probe.write_text(
        f"const m = await import({json.dumps(shimbuild.BUNDLE.as_uri())});\n"
        "console.log(typeof m.default, typeof m.launchSpec);\n"
    )
    done = subprocess.run([node, str(probe)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["function", "function"]
