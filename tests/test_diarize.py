"""`audio diarize` end to end with the real CAM++ weights on a conversation built from two
LibriSpeech readers (../shared/data/speech): speakers taking turns with pauses, whose
boundaries the test placed itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from cli_run import run_audio
from signals import write_wav

from audio_cli.diarization.turns import read_rttm

SPEECH = "data/speech/librispeech-test-other-10x10"
# (reader, utterance file) in speaking order: two readers (one male, one female) alternate
TURNS = [("1688", "1688-142285-0006"), ("3080", "3080-5032-0001"),
         ("1688", "1688-142285-0007"), ("3080", "3080-5032-0005"),
         ("1688", "1688-142285-0003"), ("3080", "3080-5032-0004")]
PAUSE = 0.8  # seconds of silence between turns
TOLERANCE = 0.6  # seconds a speaker change may lie outside the pause between the turns

SEGMENTATION = "models/pyannote-segmentation-3.0/pytorch_model.bin"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def segmentation(shared_dir):
    """pyannote segmentation-3.0's checkpoint in ../shared; skip the test if absent."""
    path = shared_dir / SEGMENTATION
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return str(path)


@pytest.fixture(scope="module")
def conversation(shared_dir, tmp_path_factory):
    """(path, [(start, end, reader)]) of the two-reader conversation at 16 kHz."""
    folder = shared_dir / SPEECH
    pieces, placed, at = [], [], 0.0
    for reader, name in TURNS:
        samples, rate = sf.read(folder / reader / f"{name}.flac", dtype="float32")
        assert rate == 16000
        pieces += [samples, np.zeros(int(PAUSE * rate), np.float32)]
        placed.append((at, at + len(samples) / rate, reader))
        at += len(samples) / rate + PAUSE
    path = tmp_path_factory.mktemp("conversation") / "talk.wav"
    write_wav(path, np.concatenate(pieces))
    return path, placed


@pytest.fixture(scope="module")
def silence(tmp_path_factory):
    path = tmp_path_factory.mktemp("silence") / "quiet.wav"
    return write_wav(path, np.zeros(16000 * 12, np.float32))


def turns_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def talk_time(turns: list[dict], start: float, end: float) -> dict[str, float]:
    """Seconds each label speaks inside [start, end)."""
    time: dict[str, float] = {}
    for t in turns:
        inside = min(end, t["end"]) - max(start, t["start"])
        if inside > 0:
            time[t["speaker"]] = time.get(t["speaker"], 0.0) + inside
    return time


def check_two_speakers(turns: list[dict], placed) -> None:
    """Two labels, one per reader, each speaking at least 90 % of the time inside its
    reader's turns (away from the edges), and a change of speaker at each pause the test
    placed between the readers."""
    assert len({t["speaker"] for t in turns}) == 2
    label: dict[str, str] = {}
    for start, end, reader in placed:
        time = talk_time(turns, start + TOLERANCE, end - TOLERANCE)
        best = max(time, key=time.get)
        assert label.setdefault(reader, best) == best, (start, end, time)
        assert sum(time.values()) - time[best] <= 0.1 * (end - start), (start, end, time)
    assert len(set(label.values())) == 2
    ordered = sorted(turns, key=lambda t: t["start"])
    changes = [(a["end"] + b["start"]) / 2 for a, b in zip(ordered, ordered[1:], strict=False)
               if a["speaker"] != b["speaker"]]
    for p0, p1 in [(placed[i][1], placed[i + 1][0]) for i in range(len(placed) - 1)]:
        assert any(p0 - TOLERANCE <= at <= p1 + TOLERANCE for at in changes), (p0, p1)


@pytest.mark.parametrize("path_kind", ["segmentation", "vad"])
def test_two_readers_give_two_speakers_at_their_turns(conversation, campplus_dir, request,
                                                      path_kind):
    path, placed = conversation
    model = request.getfixturevalue("segmentation") if path_kind == "segmentation" else "none"
    result = run_audio("diarize", path, "--model", campplus_dir, "--segmentation", model,
                       "--json")
    assert result.returncode == 0, result.stderr
    turns = turns_of(result.stdout)
    assert all(set(t) == {"file", "start", "end", "speaker", "overlap"} for t in turns)
    assert all(t["file"] == str(path) and 0 <= t["start"] < t["end"] for t in turns)
    check_two_speakers(turns, placed)


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("path_kind", ["segmentation", "vad"])
def test_speakers_is_honoured_exactly(conversation, campplus_dir, request, path_kind, count):
    path, _ = conversation
    model = request.getfixturevalue("segmentation") if path_kind == "segmentation" else "none"
    result = run_audio("diarize", path, "--model", campplus_dir, "--segmentation", model,
                       "--speakers", str(count), "--json")
    assert result.returncode == 0, result.stderr
    assert len({t["speaker"] for t in turns_of(result.stdout)}) == count


def test_max_speakers_bounds_the_count(conversation, campplus_dir):
    path, _ = conversation
    result = run_audio("diarize", path, "--model", campplus_dir, "--segmentation", "none",
                       "--max-speakers", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert len({t["speaker"] for t in turns_of(result.stdout)}) == 1


def test_rttm_output_reads_back(conversation, campplus_dir, tmp_path):
    path, placed = conversation
    out = tmp_path / "talk.rttm"
    result = run_audio("diarize", path, "--model", campplus_dir, "--segmentation", "none",
                       "--output", out)
    assert result.returncode == 0, result.stderr
    turns = read_rttm(out)["talk"]
    assert turns and len({t.speaker for t in turns}) == 2
    assert "SPEAKER_00" in result.stdout  # the table on stdout too
    again = run_audio("diarize", path, "--model", campplus_dir, "--segmentation", "none",
                      "--output", out)
    assert again.returncode == 2 and "--force" in again.stderr
    assert read_rttm(out)["talk"] == turns


def test_any_rate_and_channels(conversation, campplus_dir, tmp_path):
    import soxr

    path, placed = conversation
    samples, rate = sf.read(path, dtype="float32")
    stereo = np.stack([soxr.resample(samples, rate, 44100)] * 2, axis=1)
    other = write_wav(tmp_path / "talk44.wav", stereo, 44100)
    result = run_audio("diarize", other, "--model", campplus_dir, "--segmentation", "none",
                       "--json")
    assert result.returncode == 0, result.stderr
    check_two_speakers(turns_of(result.stdout), placed)


def test_silence_gives_no_turns_and_one_warning(silence, campplus_dir):
    result = run_audio("diarize", silence, "--model", campplus_dir, "--segmentation", "none",
                       "--json")
    assert result.returncode == 0
    assert result.stdout == ""
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no speech" in warnings[0]


def test_missing_input_fails_the_others_go_on(conversation, campplus_dir, tmp_path):
    path, _ = conversation
    result = run_audio("diarize", tmp_path / "nothere.wav", path, "--model", campplus_dir,
                       "--segmentation", "none", "--json")
    assert result.returncode == 3
    records = turns_of(result.stdout)
    assert records[0]["error"].endswith("no such file")
    assert len({r["speaker"] for r in records[1:]}) == 2


def test_exclusive_never_overlaps(shared_dir, campplus_dir, segmentation):
    """A real meeting excerpt with overlapping speech: overlapping turns without
    --exclusive, none with it."""
    meeting = shared_dir / "data/diarization/ami-debug-train/trn08.wav"
    runs = {}
    for flag in ([], ["--exclusive"]):
        result = run_audio("diarize", meeting, "--model", campplus_dir, "--segmentation",
                           segmentation, "--json", *flag)
        assert result.returncode == 0, result.stderr
        runs[bool(flag)] = turns_of(result.stdout)
    assert any(t["overlap"] for t in runs[False])
    ordered = sorted(runs[True], key=lambda t: t["start"])
    assert ordered and not any(t["overlap"] for t in ordered)
    assert all(a["end"] <= b["start"] for a, b in zip(ordered, ordered[1:], strict=False))


@pytest.mark.parametrize("path_kind", ["segmentation", "vad"])
def test_each_speaker_vector_is_nearest_to_its_readers_own_voice(conversation, campplus_dir,
                                                                 request, path_kind, shared_dir):
    """Diarization.vectors: one unit vector per speaker label in the turns, closer to an
    embedding of that reader's other utterance (not in the conversation) than to the other
    reader's."""
    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer
    from audio_cli.frontend.audio import load_audio

    path, placed = conversation
    model = request.getfixturevalue("segmentation") if path_kind == "segmentation" else "none"
    diarizer = Diarizer(DiarizeOptions(model=str(campplus_dir), engine="onnx",
                                       segmentation=model))
    result = diarizer.diarize(load_audio(path, diarizer.sample_rate), "talk")
    assert set(result.vectors) == {t.speaker for t in result.turns}
    assert len(result.vectors) == 2
    for vector in result.vectors.values():
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
    folder = shared_dir / SPEECH
    own = {reader: diarizer.speaker.embed(folder / reader / f"{name}.flac")
           for reader, name in (("1688", "1688-142285-0000"), ("3080", "3080-5032-0002"))}
    turns = [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in result.turns]
    for start, end, reader in placed:
        time = talk_time(turns, start + TOLERANCE, end - TOLERANCE)
        label = max(time, key=time.get)
        other = next(r for r in own if r != reader)
        assert result.vectors[label] @ own[reader] > result.vectors[label] @ own[other]


def test_overlap_is_found_where_the_test_placed_it(shared_dir, campplus_dir, segmentation,
                                                   tmp_path):
    """Two readers, the second starting 2.5 s before the first has finished (mixed at the
    same level): inside that stretch both labels speak most of the time, flagged as overlap;
    where one reads alone, two labels at once for little of the time."""
    folder = shared_dir / SPEECH
    a, _ = sf.read(folder / "1688" / "1688-142285-0006.flac", dtype="float32")
    b, _ = sf.read(folder / "3080" / "3080-5032-0001.flac", dtype="float32")
    rate, both = 16000, int(2.5 * 16000)
    mix = np.zeros(len(a) + len(b) - both, np.float32)
    mix[:len(a)] += a / np.sqrt(np.mean(a ** 2))
    mix[len(a) - both:] += b / np.sqrt(np.mean(b ** 2))
    path = write_wav(tmp_path / "overlap.wav", 0.05 * mix)
    result = run_audio("diarize", path, "--model", campplus_dir, "--segmentation", segmentation,
                       "--json")
    assert result.returncode == 0, result.stderr
    turns = turns_of(result.stdout)
    assert len({t["speaker"] for t in turns}) == 2

    def two_at_once(start: float, end: float) -> float:
        """Seconds inside [start, end) during which two labels speak."""
        grid = np.arange(start, end, 0.01)
        speaking = [sum(t["start"] <= x < t["end"] for t in turns) for x in grid]
        return sum(n >= 2 for n in speaking) * 0.01

    start, end = (len(a) - both) / rate, len(a) / rate
    assert two_at_once(start + 0.3, end - 0.3) >= 0.5 * (end - start - 0.6)
    assert any(t["overlap"] and t["start"] < end and start < t["end"] for t in turns)
    assert two_at_once(1.0, start - 0.5) <= 0.1 * (start - 1.5)
    assert two_at_once(end + 0.5, len(mix) / rate - 0.5) <= 0.1 * (len(mix) / rate - end - 1.0)

