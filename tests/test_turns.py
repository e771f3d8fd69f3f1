"""RTTM and UEM files read into turns, and turns written back as RTTM lines."""

from __future__ import annotations

import pytest

from audio_cli.diarization.turns import Turn, read_rttm, read_uem, rttm_line
from engines.errors import UsageError


def test_rttm_round_trip(tmp_path):
    turns = [Turn("meeting", 0.5, 2.25, "alice"), Turn("meeting", 1.0, 1.5, "bob")]
    path = tmp_path / "a.rttm"
    path.write_text("".join(rttm_line(t) for t in reversed(turns)) + ";; comment\n")
    assert read_rttm(path) == {"meeting": turns}
    fields = rttm_line(turns[0]).split()
    assert fields == ["SPEAKER", "meeting", "1", "0.500", "1.750", "<NA>", "<NA>", "alice",
                      "<NA>", "<NA>"]


def test_bad_rttm_and_uem_name_the_line(tmp_path):
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER x 1 0.0 1.0 <NA> <NA> a <NA> <NA>\nSPEAKER x 1 zero 1 <NA> <NA> a\n")
    with pytest.raises(UsageError, match=r"bad.rttm:2: start 'zero'"):
        read_rttm(bad)
    uem = tmp_path / "a.uem"
    uem.write_text("x NA 0.000 30.000\ny 1 5 2\n")
    with pytest.raises(UsageError, match=r"a.uem:2: the region ends before it starts"):
        read_uem(uem)
    with pytest.raises(UsageError, match="no such file"):
        read_uem(tmp_path / "missing.uem")


@pytest.mark.shared
def test_reads_the_ami_reference(shared_dir):
    folder = shared_dir / "data" / "diarization" / "ami-debug-train"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    reference = read_rttm(folder / "reference.rttm")
    assert sorted(reference) == [f"trn{i:02d}" for i in range(10)]
    assert read_uem(folder / "reference.uem")["trn03"] == [(0.0, 30.0)]
    assert {t.speaker for t in reference["trn00"]} >= {"MEE068"}
