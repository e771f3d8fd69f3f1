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


def trading_turns(shared_dir, readers: tuple[str, str], seconds: tuple[float, float],
                  seed: int, utterances: int | None = None):
    """(16 kHz samples, [(start, end, reader)]): two LibriSpeech test-other readers taking
    sixteen turns in alternation, each turn the next `seconds` (drawn between the two
    bounds) of the reader's first `utterances` files joined, 0.6 s of silence after each."""
    import soundfile as sf

    folder = shared_dir / "data/speech/librispeech-test-other-10x10"
    voices = {r: np.concatenate([sf.read(p, dtype="float32")[0]
                                 for p in sorted((folder / r).glob("*.flac"))[:utterances]])
              for r in readers}
    rng = np.random.default_rng(seed)
    parts, placed, at, used = [], [], 0.0, dict.fromkeys(readers, 0)
    for turn in range(16):
        reader = readers[turn % 2]
        piece = voices[reader][used[reader]:used[reader] + int(rng.uniform(*seconds) * 16000)]
        used[reader] += len(piece)
        parts += [piece, np.zeros(int(0.6 * 16000), np.float32)]
        placed.append((at, at + len(piece) / 16000, reader))
        at += len(piece) / 16000 + 0.6
    return np.concatenate(parts), placed


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

    from audio_cli.diarization import clips as clips_module
    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer, PieceBuilder
    from audio_cli.diarization.scoring import FULL, score_recording
    from audio_cli.frontend.audio import from_samples

    checkpoint = shared_dir / "models/pyannote-segmentation-3.0/pytorch_model.bin"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is not present")
    samples, placed = trading_turns(shared_dir, ("1688", "3080"), (3.0, 5.0), seed=3,
                                    utterances=3)
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


def test_agreeing_pieces_of_a_local_speaker_are_one_point():
    """Pieces of one local speaker in one chunk whose vectors agree share their weighted
    mean; a local speaker whose pieces disagree, and lone pieces, keep their own."""
    from audio_cli.diarization.pipeline import SAME_LOCAL_SPEAKER, Pieces

    rng = np.random.default_rng(0)
    base = rng.standard_normal(8)
    near = [base + 0.1 * rng.standard_normal(8) for _ in range(2)]
    far = [rng.standard_normal(8) for _ in range(2)]
    vectors = np.stack(near + far + [rng.standard_normal(8)]).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] >= SAME_LOCAL_SPEAKER > unit[2] @ unit[3]
    # chunk 0: local 0 has the two near pieces and a short one with no vector; local 1 the
    # two far ones; chunk 1: one piece
    pieces = Pieces(chunk=np.array([0, 0, 0, 0, 0, 1]), local=np.array([0, 0, 0, 1, 1, 0]),
                    first=np.zeros(6, int), end=np.ones(6, int),
                    clean=np.array([3.0, 1.0, 0.2, 2.0, 2.5, 4.0]), vectors=vectors,
                    embedded=np.array([True, True, False, True, True, True]))
    means, seconds, leader = pieces.agreeing_means()
    mean = 3.0 * unit[0] + 1.0 * unit[1]
    assert np.allclose(means[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(means[1], means[0])
    assert np.allclose(means[2:], unit[2:], atol=1e-6)
    assert seconds.tolist() == [4.0, 4.0, 2.0, 2.5, 4.0]
    assert leader.tolist() == [True, False, True, True, True]


def test_a_lone_embedding_joins_a_cluster_from_ten_items_on():
    from audio_cli.diarization.clustering import LONE_FROM, absorb_small

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    for n in (LONE_FROM - 1, LONE_FROM):
        x = np.stack([a + 0.1 * rng.standard_normal(16) for _ in range(n - 3)]
                     + [b + 0.1 * rng.standard_normal(16) for _ in range(2)]
                     + [a + b])  # the last one alone
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        labels = np.array([0] * (n - 3) + [1, 1] + [2])
        out = absorb_small(x, labels, low=1)
        if n < LONE_FROM:
            assert out.tolist() == labels.tolist()
        else:  # the lone one goes to whichever group its vector is closer to, the pair stays
            closer = 0 if x[-1] @ x[:n - 3].mean(0) > x[-1] @ x[n - 3:n - 1].mean(0) else 1
            assert out[:-1].tolist() == labels[:-1].tolist() and out[-1] == closer


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2])
def test_two_readers_trading_short_turns_are_two_speakers(shared_dir, campplus_dir, seed):
    """Readers 2033 and 2414 trading sixteen 2-3 s turns with 0.6 s pauses: two speakers
    (before the pieces of a local speaker were clustered as one point, three were found for
    these two conversations)."""

    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer
    from audio_cli.frontend.audio import from_samples

    checkpoint = shared_dir / "models/pyannote-segmentation-3.0/pytorch_model.bin"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is not present")
    samples, _ = trading_turns(shared_dir, ("2033", "2414"), (2.0, 3.0), seed=seed)
    with Diarizer(DiarizeOptions(model=str(campplus_dir), engine="onnx",
                                 segmentation=str(checkpoint), threads=2)) as diarizer:
        turns = diarizer.diarize(from_samples(samples, 16000), "talk").turns
    assert len({t.speaker for t in turns}) == 2
