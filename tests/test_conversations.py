"""bench/conversations.py builds simulated conversations whose reference RTTM is where the
speech was put, with the overlap it promises, the same for the same seed.

The readers here are synthetic: voiced bursts with exact silence between them, so where each
speaker's speech lies is known without any detector (the samples are not zero).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from signals import voiced

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio_cli.diarization.turns import read_rttm, read_uem  # noqa: E402
from bench import conversations as cv  # noqa: E402

RATE = 16000


@functools.cache
def reader_utterances(speaker: int, count: int = 4) -> list[np.ndarray]:
    """Utterances of bursts (0.4-2.5 s) and silences (0.1-0.9 s) of one synthetic voice."""
    rng = np.random.default_rng(speaker)
    out = []
    for u in range(count):
        parts = [np.zeros(int(0.2 * RATE), np.float32)]
        for b in range(int(rng.integers(3, 7))):
            burst = voiced(rng.uniform(0.4, 2.5), f0=90 + 35 * speaker, seed=100 * u + b)
            parts += [burst, np.zeros(int(rng.uniform(0.1, 0.9) * RATE), np.float32)]
        out.append(np.concatenate(parts))
    return out


@functools.cache
def readers(n: int) -> dict[str, list[cv.Utterance]]:
    return {f"s{k}": [cv.utterance(f"s{k}", f"u{i}", x)
                      for i, x in enumerate(reader_utterances(k))] for k in range(n)}


def mask(spans, n: int) -> np.ndarray:
    out = np.zeros(n, bool)
    for s, e in spans:
        out[s:e] = True
    return out


def dilate(flags: np.ndarray, width: int) -> np.ndarray:
    summed = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    index = np.arange(len(flags))
    lo, hi = np.maximum(index - width, 0), np.minimum(index + width + 1, len(flags))
    return summed[hi] - summed[lo] > 0


def fill_gaps(flags: np.ndarray, shorter_than: int) -> np.ndarray:
    out = flags.copy()
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for end, start in zip(ends[:-1], starts[1:], strict=True):
        if start - end < shorter_than:
            out[end:start] = True
    return out


def test_reference_is_where_each_speaker_was_placed():
    conv = cv.build(cv.Plan("tiny", 60.0, 3, overlap_target=0.08), readers(3),
                    np.random.default_rng(5), keep_stems=True)
    n = len(conv.audio)
    assert set(conv.stems) == {t.speaker for t in conv.turns} and len(conv.stems) == 3
    for speaker, stem in conv.stems.items():
        placed = stem != 0
        ref = mask([(round(t.start * RATE), round(t.end * RATE))
                    for t in conv.turns if t.speaker == speaker], n)
        # every placed sample is in the reference ...
        assert not np.any(placed & ~ref), speaker
        # ... and the reference adds only pauses under 0.2 s and the detector's frame edges
        # and margins (< 50 ms): longer pauses inside an utterance are not speech
        allowed = dilate(fill_gaps(placed, int(0.25 * RATE)), int(0.05 * RATE))
        assert not np.any(ref & ~allowed), speaker
        assert ref.sum() < 1.1 * placed.sum()
    assert conv.turns == sorted(conv.turns)


def test_overlap_share_is_in_range_and_mixture_has_the_speech():
    for seed in range(4):
        conv = cv.build(cv.Plan("tiny", 90.0, 3), readers(3), np.random.default_rng(seed))
        grid = np.zeros(len(conv.audio) + 1, np.int32)
        for t in conv.turns:
            grid[round(t.start * RATE):round(t.end * RATE)] += 1
        share = np.count_nonzero(grid >= 2) / np.count_nonzero(grid >= 1)
        assert 0.05 <= share <= 0.15, (seed, share)
        assert 85 <= conv.seconds <= 120
        assert np.isfinite(conv.audio).all() and np.abs(conv.audio).max() <= 1.0
        # noise everywhere, louder where the reference has speech
        speech = grid[:len(conv.audio)] > 0
        assert np.count_nonzero(conv.audio == 0) < 0.01 * len(conv.audio)
        assert np.mean(conv.audio[speech] ** 2) > 5 * np.mean(conv.audio[~speech] ** 2)


def test_same_seed_same_conversation_other_seed_another():
    material = readers(4)
    a = cv.build(cv.Plan("c", 45.0, 3), material, np.random.default_rng([7, 1]))
    b = cv.build(cv.Plan("c", 45.0, 3), material, np.random.default_rng([7, 1]))
    c = cv.build(cv.Plan("c", 45.0, 3), material, np.random.default_rng([8, 1]))
    assert a.turns == b.turns and np.array_equal(a.audio, b.audio)
    assert a.turns != c.turns


def write_corpus(folder: Path, speakers: int) -> None:
    lines = ["speaker,file,duration_s,sample_rate,channels,format,source,license"]
    for k in range(speakers):
        (folder / f"r{k}").mkdir(parents=True)
        for i, x in enumerate(reader_utterances(k, 3)):
            name = f"r{k}/r{k}-0-{i:04d}.flac"
            sf.write(str(folder / name), x, RATE, subtype="PCM_16")
            lines.append(f"r{k},{name},{len(x) / RATE},16000,1,FLAC/PCM_16,test,test")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")


def test_command_writes_the_set_and_keeps_it(tmp_path, capsys):
    write_corpus(tmp_path / "speech", 3)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--count", "2", "--seed", "3", "--speech", str(tmp_path / "speech")]
    assert cv.main(argv) == 0
    reference = read_rttm(out / "reference.rttm")
    regions = read_uem(out / "reference.uem")
    assert sorted(reference) == sorted(regions) == ["conv00", "conv01"]
    for uri, turns in reference.items():
        audio, rate = sf.read(str(out / f"{uri}.wav"))
        assert rate == RATE and audio.ndim == 1
        assert regions[uri] == [(0.0, pytest.approx(len(audio) / RATE, abs=1e-3))]
        assert len({t.speaker for t in turns}) == 2 + int(uri[-1])
        assert read_rttm(out / f"{uri}.rttm")[uri] == turns
        assert 120 <= len(audio) / RATE <= 330
    assert "LibriSpeech" in (out / "README.md").read_text()
    first = (out / "conv01.wav").read_bytes()
    # an existing set is kept unless --force
    assert cv.main(argv) == 1
    assert "--force" in capsys.readouterr().err
    assert cv.main([*argv, "--force"]) == 0
    assert (out / "conv01.wav").read_bytes() == first
