"""server.jail.Jail as plain functions on a temp directory: every path a client sends stays
inside the account's root, or is refused. The same escapes tried through real clients against
a real server are in tests/e2e/test_jail.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.jail import Jail
from ssftp.errors import Refused
from ssftp.layout import TEMP_PREFIX

# -- unit tests of Jail ------------------------------------------------------------------------


@pytest.fixture
def jail_tree(tmp_path: Path) -> tuple[Jail, Path, Path]:
    """A jail root with a file and a directory, and an outside directory with a secret."""
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "inside.txt").write_text("inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    return Jail(root), root, outside


@pytest.mark.parametrize(("client_path", "virtual"), [
    (b"", "/"),
    (b".", "/"),
    (b"/", "/"),
    (b"..", "/"),
    (b"/..", "/"),
    (b"/../..", "/"),
    (b"../../etc/passwd", "/etc/passwd"),
    (b"sub/../../x", "/x"),
    (b"sub/./deeper/../../../..", "/"),
    (b"//etc//passwd", "/etc/passwd"),
    (b"///", "/"),
    (b"a/b/", "/a/b"),
])
def test_virtual_path_never_leaves_root(jail_tree, client_path, virtual):
    jail, _, _ = jail_tree
    assert jail.virtual(client_path) == virtual


@pytest.mark.parametrize("client_path", [
    b"../../etc/passwd", b"/../..", b"sub/../../x", b"/etc/passwd", b"..", b"../outside/secret.txt",
])
def test_resolve_dotdot_and_absolute_stay_inside(jail_tree, client_path):
    jail, root, _ = jail_tree
    resolved = jail.resolve(client_path)
    real_root = Path(os.path.realpath(root))
    assert resolved.host == real_root or real_root in resolved.host.parents
    assert not resolved.virtual.startswith(str(root))


def test_resolve_absolute_host_path_is_taken_as_virtual(jail_tree):
    jail, _, outside = jail_tree
    secret = str(outside / "secret.txt").encode()
    resolved = jail.resolve(secret)
    assert resolved.virtual == str(outside / "secret.txt")
    assert resolved.host == jail.root / str(outside / "secret.txt").lstrip("/")
    assert not resolved.host.exists()


@pytest.mark.parametrize("absolute", [True, False])
def test_resolve_refuses_symlink_to_outside_file(jail_tree, absolute):
    jail, root, outside = jail_tree
    target = outside / "secret.txt"
    link = root / "link.txt"
    link.symlink_to(target if absolute else os.path.relpath(target, root))
    with pytest.raises(Refused):
        jail.resolve(b"/link.txt")
    # The link itself (lstat, remove) is addressable; it is inside.
    assert jail.resolve(b"/link.txt", follow_final=False).host == jail.root / "link.txt"


@pytest.mark.parametrize("absolute", [True, False])
def test_resolve_refuses_paths_through_symlinked_directory(jail_tree, absolute):
    jail, root, outside = jail_tree
    link = root / "sub" / "out"
    link.symlink_to(outside if absolute else os.path.relpath(outside, link.parent))
    for path in (b"/sub/out", b"/sub/out/secret.txt", b"/sub/out/new.txt"):
        with pytest.raises(Refused):
            jail.resolve(path)
    # A parent directory is always resolved, even when the final component is not followed.
    with pytest.raises(Refused):
        jail.resolve(b"/sub/out/secret.txt", follow_final=False)
    with pytest.raises(Refused):
        jail.resolve(b"/sub/out/new-dir", follow_final=False)


def test_resolve_refuses_dangling_symlink_to_outside(jail_tree):
    jail, root, outside = jail_tree
    (root / "dangling").symlink_to(outside / "does-not-exist-yet")
    with pytest.raises(Refused):
        jail.resolve(b"/dangling")


def test_resolve_refuses_symlink_to_sibling_with_same_prefix(tmp_path):
    """``/data/root`` must not contain ``/data/root-evil``."""
    root = tmp_path / "root"
    root.mkdir()
    sibling = tmp_path / "root-evil"
    sibling.mkdir()
    (sibling / "f.txt").write_text("evil")
    (root / "l").symlink_to("../root-evil/f.txt")
    jail = Jail(root)
    assert not jail.contains(str(sibling / "f.txt"))
    assert not jail.contains(str(sibling))
    with pytest.raises(Refused):
        jail.resolve(b"/l")


def test_resolve_follows_symlinks_that_stay_inside(jail_tree):
    jail, root, _ = jail_tree
    (root / "sub" / "to-inside").symlink_to("../inside.txt")
    (root / "abs-to-sub").symlink_to(root / "sub")
    assert jail.resolve(b"/sub/to-inside").host == jail.root / "inside.txt"
    assert jail.resolve(b"/abs-to-sub/deeper").host == jail.root / "sub" / "deeper"
    assert jail.to_virtual(jail.resolve(b"/sub/to-inside").host) == "/inside.txt"


def test_jail_root_through_a_symlink(tmp_path):
    real = tmp_path / "real-root"
    real.mkdir()
    (real / "f").write_text("x")
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    jail = Jail(alias)
    assert jail.root == Path(os.path.realpath(real))
    assert jail.resolve(b"/f").host == jail.root / "f"
    assert jail.resolve(b"/").virtual == "/"
    assert jail.to_virtual(jail.root) == "/"


def _resolved_by_realpath(jail: Jail, client_path: bytes, follow_final: bool) -> str:
    """What resolve() must return: os.path.realpath of the whole path, as the jail once did."""
    virtual = jail.virtual(client_path)
    lexical = os.path.join(jail.root, virtual.lstrip("/"))
    if follow_final or virtual == "/":
        host = os.path.realpath(lexical)
    else:
        parent, name = os.path.split(lexical)
        host = os.path.join(os.path.realpath(parent), name)
    if not jail.contains(host):
        raise Refused("outside")
    return host


@pytest.mark.parametrize("follow_final", [True, False])
def test_resolve_matches_realpath_for_every_kind_of_path(jail_tree, follow_final):
    jail, root, outside = jail_tree
    (root / "link-in").symlink_to(root / "sub")
    (root / "sub" / "up").symlink_to("..")
    (root / "chain").symlink_to("link-in")
    (root / "link-out").symlink_to(outside)
    (root / "dangling").symlink_to(root / "nowhere" / "at-all")
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    (root / "sub" / "deeper" / "rel-in").symlink_to("../../inside.txt")
    paths = [b"/", b"inside.txt", b"sub/deeper", b"sub/deeper/new.txt", b"missing/a/b",
             b"inside.txt/under-a-file", b"link-in", b"link-in/deeper/x", b"sub/up/inside.txt",
             b"chain/deeper", b"link-out", b"link-out/secret.txt", b"dangling", b"dangling/x",
             b"loop-a", b"loop-a/x", b"sub/deeper/rel-in", b"sub/up/sub/up/link-in/new"]
    for client_path in paths:
        try:
            expected: str | None = _resolved_by_realpath(jail, client_path, follow_final)
        except Refused:
            expected = None
        try:
            found: str | None = str(jail.resolve(client_path, follow_final=follow_final).host)
        except Refused:
            found = None
        assert found == expected, client_path


def test_to_virtual_refuses_outside_host_paths(jail_tree):
    jail, _, outside = jail_tree
    assert jail.to_virtual(jail.root) == "/"
    assert jail.to_virtual(jail.root / "sub" / "deeper") == "/sub/deeper"
    for host in (outside / "secret.txt", jail.root.parent, Path("/etc/passwd"),
                 Path(str(jail.root) + "-evil")):
        with pytest.raises(Refused):
            jail.to_virtual(host)


@pytest.mark.parametrize("client_path", [
    f"{TEMP_PREFIX}abc".encode(),
    f"/{TEMP_PREFIX}abc".encode(),
    f"sub/{TEMP_PREFIX}0123/inner.txt".encode(),
    f"sub/../{TEMP_PREFIX}x".encode(),
    TEMP_PREFIX.encode(),
])
def test_temp_names_are_refused(jail_tree, client_path):
    jail, _, _ = jail_tree
    with pytest.raises(Refused):
        jail.virtual(client_path)
    with pytest.raises(Refused):
        jail.resolve(client_path, follow_final=False)


@pytest.mark.parametrize("client_path",
                         [b"\xff\xfe", b"bad-\xc3(.txt", b"/sub/\x80", b"\xed\xa0\x80"])
def test_invalid_utf8_is_refused(jail_tree, client_path):
    jail, _, _ = jail_tree
    with pytest.raises(Refused):
        jail.resolve(client_path)


@pytest.mark.parametrize("client_path",
                         [b"a\x00b", b"\x00", b"/inside.txt\x00.jpg", b"sub/\x00/.."])
def test_nul_is_refused(jail_tree, client_path):
    jail, _, _ = jail_tree
    with pytest.raises(Refused):
        jail.resolve(client_path)
