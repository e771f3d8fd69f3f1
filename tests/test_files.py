"""engines.files.new_file: a file appears whole under its name or not at all."""

from __future__ import annotations

import pytest

from engines.files import TargetExists, new_file


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_finished_block_publishes_the_file(tmp_path):
    target = tmp_path / "out.txt"
    with new_file(target) as draft:
        draft.path.write_text("all of it", encoding="utf-8")
        assert not target.exists()  # nothing under the name until the end
    assert target.read_text(encoding="utf-8") == "all of it"
    assert leftovers(tmp_path) == ["out.txt"]


def test_an_error_or_abandon_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), new_file(target) as draft:
        draft.path.write_text("half", encoding="utf-8")
        raise RuntimeError("cut off")
    with new_file(target) as draft:
        draft.path.write_text("half", encoding="utf-8")
        draft.abandon()
    assert leftovers(tmp_path) == []


def test_an_existing_file_is_kept_unless_replace(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("theirs", encoding="utf-8")
    with pytest.raises(TargetExists), new_file(target) as draft:
        draft.path.write_text("ours", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "theirs"
    assert leftovers(tmp_path) == ["out.txt"]
    with new_file(target, replace=True) as draft:
        draft.path.write_text("ours", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "ours"
    assert leftovers(tmp_path) == ["out.txt"]
