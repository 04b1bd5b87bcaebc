"""list_files policy: inside the agent's cwd only, symlinks out excluded, hidden on request, capped."""

from __future__ import annotations

import os

from pi_socket.bridge.files import MAX_ENTRIES, list_files


def tree(tmp_path):
    root = tmp_path / "proj"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("x")
    (root / "src" / "makefile").write_text("x")
    (root / "README.md").write_text("x")
    (root / ".env").write_text("x")
    sibling = tmp_path / "proj-secrets"  # string-prefix of root: the old bug accepted it
    sibling.mkdir()
    (sibling / "key").write_text("x")
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    os.symlink(outside, root / "link-out")
    os.symlink(root / "README.md", root / "link-in")
    return root


def paths(result):
    return [e["path"] for e in result]


def test_lists_directory_part_filtered_by_basename(tmp_path):
    root = tree(tmp_path)
    assert paths(list_files(root, "src/ma")) == ["src/main.py", "src/makefile"]
    assert list_files(root, "src/")[0] == {"path": "src/pkg", "is_dir": True}
    assert paths(list_files(root, "")) == ["src", "link-in", "README.md"]


def test_hidden_only_when_asked(tmp_path):
    root = tree(tmp_path)
    assert ".env" not in paths(list_files(root, ""))
    assert paths(list_files(root, ".e")) == [".env"]


def test_never_leaves_cwd(tmp_path):
    root = tree(tmp_path)
    for prefix in (
        "../",
        "../proj-secrets/",
        "../proj-secrets/k",
        "/etc/pass",
        "/",
        "src/../../",
        "a\0b",
        "link-out/",
        "nonexistent/x",
    ):
        assert list_files(root, prefix) == [], prefix
    assert "link-out" not in paths(list_files(root, "link"))
    assert paths(list_files(root, "link")) == ["link-in"]


def test_cwd_that_is_itself_a_symlink(tmp_path):
    root = tree(tmp_path)
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert paths(list_files(alias, "src/ma")) == ["src/main.py", "src/makefile"]


def test_capped(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(MAX_ENTRIES + 50):
        (root / f"f{i:04d}").write_text("")
    assert len(list_files(root, "f")) == MAX_ENTRIES
