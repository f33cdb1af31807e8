"""snnse.atomic: complete files or nothing."""

import os

import pytest

from snnse.atomic import atomic_path, atomic_write_text


def test_write_replaces_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first\r\n")
    assert target.read_bytes() == b"first\r\n"  # no newline translation
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"first\r\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]  # the temporary file is gone


def test_permissions_follow_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
