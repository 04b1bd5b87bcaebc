"""Path policy: everything stays inside $HOME, and validation creates nothing."""

from __future__ import annotations

import os

import pytest

from hypivisor import paths
from hypivisor.paths import PathError


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "proj" / "sub").mkdir(parents=True)
    (h / "b-dir").mkdir()
    (h / "A-dir").mkdir()
    (h / ".hidden").mkdir()
    (h / "file.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    (h / "link-in").symlink_to(h / "proj")
    (h / "link-out").symlink_to(tmp_path / "outside")
    (h / "dangling").symlink_to(h / "nowhere")
    (h / "loop-a").symlink_to(h / "loop-b")
    (h / "loop-b").symlink_to(h / "loop-a")
    return str(h)


def code_of(fn, *args) -> int:
    with pytest.raises(PathError) as e:
        fn(*args)
    return e.value.code


def test_default_is_home_listing_dirs_only_sorted_without_hidden(home):
    listing = paths.list_directories(None, home)
    assert listing.path == os.path.realpath(home) and listing.parent is None
    assert [n for n, _ in listing.directories] == ["A-dir", "b-dir", "link-in", "proj"]


def test_symlink_inside_home_is_followed_outside_is_hidden(home):
    names = dict(paths.list_directories("", home).directories)
    assert "link-in" in names and "link-out" not in names and "dangling" not in names
    assert "loop-a" not in names and "loop-b" not in names  # a symlink loop is skipped, not an error


def test_relative_tilde_and_absolute_paths_resolve_inside_home(home):
    sub = os.path.join(os.path.realpath(home), "proj", "sub")
    assert paths.resolve_dir("proj/sub", home) == sub
    assert paths.resolve_dir("~/proj/sub", home) == sub
    assert paths.resolve_dir(sub, home) == sub
    assert paths.list_directories("proj", home).parent == os.path.realpath(home)


@pytest.mark.parametrize("raw", ["..", "../outside", "/etc", "/", "link-out", "proj/../../outside", "~/../outside"])
def test_escapes_are_rejected_as_outside_home(home, raw):
    assert code_of(paths.resolve_dir, raw, home) == 1003


def test_prefix_sibling_is_not_inside(tmp_path):
    home = tmp_path / "u"
    home.mkdir()
    (tmp_path / "u2").mkdir()
    assert code_of(paths.resolve_dir, str(tmp_path / "u2"), str(home)) == 1003


def test_outside_nonexistent_path_says_outside_not_missing(home):
    assert code_of(paths.resolve_dir, "/definitely/not/here", home) == 1003


def test_missing_inside_home_is_1004_and_file_is_1005(home):
    assert code_of(paths.resolve_dir, "nope", home) == 1004
    assert code_of(paths.resolve_dir, "file.txt", home) == 1005


def test_nul_and_overlong_are_invalid(home):
    assert code_of(paths.resolve_dir, "proj\x00x", home) == 1005
    assert code_of(paths.resolve_dir, "a" * 5000, home) == 1005


def test_unreadable_entries_are_skipped(home):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    locked = os.path.join(home, "proj", "locked")
    os.mkdir(locked, 0)
    try:
        assert "locked" in dict(paths.list_directories("proj", home).directories)
        assert code_of(paths.list_directories, "proj/locked", home) == 1004
    finally:
        os.chmod(locked, 0o755)


@pytest.mark.parametrize("name", ["a/b", "..", ".", ".git", "x\x00", "a" * 201, "", " pad", "a\\b"])
def test_new_folder_must_be_one_visible_segment(name):
    assert code_of(paths.validate_folder_name, name) == 1005


def test_spawn_target_validates_everything_before_anything_is_created(home, tmp_path):
    before = sorted(os.listdir(tmp_path))
    assert code_of(paths.spawn_target, str(tmp_path), "x", home) == 1003
    assert code_of(paths.spawn_target, "proj", "../x", home) == 1005
    assert code_of(paths.spawn_target, "link-out", "x", home) == 1003
    assert sorted(os.listdir(tmp_path)) == before
    assert not os.path.exists(os.path.join(home, "proj", "x"))


def test_spawn_target_new_and_existing_folders(home):
    real = os.path.realpath(home)
    assert paths.spawn_target("proj", None, home) == paths.SpawnTarget(os.path.join(real, "proj"), False)
    assert paths.spawn_target("proj", "new", home) == paths.SpawnTarget(os.path.join(real, "proj", "new"), True)
    assert paths.spawn_target("proj", "sub", home).create is False


def test_new_folder_that_is_a_symlink_out_of_home_is_rejected(home, tmp_path):
    os.symlink(tmp_path / "outside", os.path.join(home, "proj", "escape"))
    assert code_of(paths.spawn_target, "proj", "escape", home) == 1003
