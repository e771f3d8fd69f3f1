"""Which samples of a piece are embedded (the middle of its speech, as runs), and an earlier
chunk's vector serving a clip that repeats most of its samples (diarization/clips.py)."""

from __future__ import annotations

import numpy as np
import pytest

from audio_cli.diarization.clips import SAME_CLIP, RecentClips, clip_runs, jaccard


def random_runs(rng, length: int) -> list[tuple[int, int]]:
    mask = rng.random(length) < 0.3
    mask = np.convolve(mask, np.ones(5), mode="same") > 0  # runs of a few samples
    return clip_runs(mask, length)


@pytest.mark.parametrize("seed", range(6))
def test_clip_runs_are_the_middle_of_the_masked_samples(seed):
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(400).astype(np.float32)
    mask = np.convolve(rng.random(400) < 0.1, np.ones(7), mode="same") > 0
    for keep in (1, 17, int(mask.sum()) - 1, int(mask.sum()), 1000):
        runs = clip_runs(mask, keep)
        # by indexing: the masked samples, cut to the middle `keep`
        chosen = samples[mask]
        if len(chosen) > keep:
            chosen = chosen[(len(chosen) - keep) // 2:][:keep]
        got = np.concatenate([samples[a:b] for a, b in runs])
        assert np.array_equal(got, chosen)
        assert all(a < b for a, b in runs)
        assert all(b0 < a1 for (_, b0), (a1, _) in zip(runs, runs[1:], strict=False))


@pytest.mark.parametrize("seed", range(6))
def test_jaccard_counts_the_shared_samples(seed):
    rng = np.random.default_rng(seed)
    first, second = random_runs(rng, 300), random_runs(rng, 300)
    a = {i for s, e in first for i in range(s, e)}
    b = {i for s, e in second for i in range(s, e)}
    assert jaccard(first, second) == pytest.approx(len(a & b) / len(a | b))
    assert jaccard(first, first) == 1.0
    assert jaccard(first, [(1000, 1010)]) == 0.0


def test_an_earlier_chunks_clip_with_most_of_the_samples_serves():
    recent = RecentClips()
    recent.add(0, [(0, 1000)], vector=0)
    recent.add(0, [(2000, 2600), (2700, 3000)], vector=1)
    recent.add(1, [(5000, 6000)], vector=2)
    # 900 samples shared with vector 0's clip, 1050 in either: 0.86
    assert recent.same(1, [(100, 1050)]) == 0
    # the best of two candidates; not below SAME_CLIP
    assert recent.same(1, [(2000, 2600), (2700, 2950)]) == 1
    assert recent.same(1, [(0, 500)]) is None  # 500 / 1000 < SAME_CLIP
    assert SAME_CLIP > 0.5
    # a clip of the same chunk is another local speaker: never reused
    assert recent.same(1, [(5000, 6000)]) is None
    assert recent.same(2, [(5000, 6000)]) == 2
    recent.forget_before(1000)  # vector 0's clip ends at 1000
    assert recent.same(1, [(0, 1000)]) is None
    assert recent.same(2, [(5000, 6000)]) == 2


@pytest.mark.slow
def test_repeated_clips_embed_less_and_change_nothing_seen(shared_dir, campplus_dir,
                                                          monkeypatch):
    """Two LibriSpeech readers trading turns of 3-5 s (each turn seen by two or three chunks):
    the same two speakers at the same places with and without reuse, at most 2 % of the
    speech labelled otherwise, and at least 10 % less audio embedded with it."""
    import soundfile as sf

    from audio_cli.diarization import clips as clips_module
    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer, PieceBuilder
    from audio_cli.diarization.scoring import FULL, score_recording
    from audio_cli.frontend.audio import from_samples

    checkpoint = shared_dir / "models/pyannote-segmentation-3.0/pytorch_model.bin"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is not present")
    folder = shared_dir / "data/speech/librispeech-test-other-10x10"
    voices = {r: np.concatenate([sf.read(p, dtype="float32")[0]
                                 for p in sorted((folder / r).glob("*.flac"))[:3]])
              for r in ("1688", "3080")}
    rng = np.random.default_rng(3)
    parts, placed, at, used = [], [], 0.0, {"1688": 0, "3080": 0}
    for turn in range(16):
        reader = ("1688", "3080")[turn % 2]
        length = int(rng.uniform(3.0, 5.0) * 16000)
        parts += [voices[reader][used[reader]:used[reader] + length],
                  np.zeros(int(0.6 * 16000), np.float32)]
        used[reader] += length
        placed.append((at, at + length / 16000, reader))
        at += length / 16000 + 0.6
    samples = np.concatenate(parts)
    diarizer = Diarizer(DiarizeOptions(model=str(campplus_dir), engine="onnx",
                                       segmentation=str(checkpoint), threads=1))
    embedded = []
    embed = PieceBuilder._embed

    def counting(self, batch):
        embedded.append(sum(len(c) for c in batch))
        return embed(self, batch)

    monkeypatch.setattr(PieceBuilder, "_embed", counting)
    reused = diarizer.diarize(from_samples(samples, 16000), "talk").turns
    with_reuse = sum(embedded)
    embedded.clear()
    monkeypatch.setattr(clips_module, "SAME_CLIP", 1.01)  # no clip is that alike
    alone = diarizer.diarize(from_samples(samples, 16000), "talk").turns
    assert sum(embedded) > 0 and with_reuse <= 0.9 * sum(embedded)
    assert len({t.speaker for t in alone}) == len({t.speaker for t in reused}) == 2
    score = score_recording(alone, reused, None, FULL)
    assert score.errors <= 0.02 * score.speech
    # and both are right: most of each reader's speech carries one label, theirs alone
    for turns in (alone, reused):
        talk: dict[str, dict[str, float]] = {}
        for start, end, reader in placed:
            for t in turns:
                inside = min(end - 0.3, t.end) - max(start + 0.3, t.start)
                if inside > 0:
                    mine = talk.setdefault(reader, {})
                    mine[t.speaker] = mine.get(t.speaker, 0.0) + inside
        label = {reader: max(time, key=time.get) for reader, time in talk.items()}
        assert len(set(label.values())) == 2
        for reader, time in talk.items():
            assert time[label[reader]] >= 0.85 * sum(time.values()), (reader, time)
