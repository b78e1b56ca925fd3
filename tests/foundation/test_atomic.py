"""One atomic-replace mechanism for the lake, checkpoints and the alerter: all or nothing, no litter."""

from __future__ import annotations

import pytest

from continuum.atomic import replace_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replace_atomically(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".state.json.")  # hidden, beside the target
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_clean_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "ckpt.pt"  # the folder is created
    for fsync in (True, False):
        with replace_atomically(target, fsync=fsync) as tmp:
            tmp.write_bytes(b"new" + bytes([fsync]))
        assert target.read_bytes() == b"new" + bytes([fsync])
    assert [p.name for p in target.parent.iterdir()] == ["ckpt.pt"]
