"""Clustering and frame-activity helpers of audio_cli.diarization, on vectors and activities
built here, and the command line's checks of its options (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from cli_run import run_audio

from audio_cli.diarization import activity
from audio_cli.diarization.clustering import SpeakerCount, cluster
from engines.errors import UsageError


def groups(sizes: list[int], dim: int = 64, spread: float = 0.35, seed: int = 0):
    """Vectors around len(sizes) random unit centres; their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x, y = [], []
    for label, size in enumerate(sizes):
        noise = rng.standard_normal((size, dim)) * spread / np.sqrt(dim)
        x.append(centres[label] + noise)
        y += [label] * size
    order = rng.permutation(len(y))
    return np.concatenate(x)[order], np.array(y)[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return all(len(set(b[a == label])) == 1 for label in set(a)) and \
        len(set(a)) == len(set(b))


@pytest.mark.parametrize("method", ["ahc", "spectral"])
@pytest.mark.parametrize("sizes", [[12, 9], [10, 8, 15], [6, 7, 8, 9, 10]])
def test_automatic_count_finds_separated_groups(method, sizes):
    x, y = groups(sizes)
    assert same_partition(cluster(x, method=method), y)


@pytest.mark.parametrize("method", ["ahc", "spectral"])
@pytest.mark.parametrize("exact", [1, 2, 4, 7])
def test_exact_count_is_honoured(method, exact):
    x, _ = groups([10, 8, 15])
    labels = cluster(x, SpeakerCount(exact=exact), method)
    assert sorted(set(labels.tolist())) == list(range(exact))


@pytest.mark.parametrize("method", ["ahc", "spectral"])
def test_bounds_are_honoured(method):
    x, _ = groups([10, 8, 15, 9])
    assert len(set(cluster(x, SpeakerCount(high=2), method).tolist())) == 2
    x, _ = groups([20])
    assert len(set(cluster(x, SpeakerCount(low=3), method).tolist())) == 3


def test_labels_follow_first_appearance():
    x, _ = groups([5, 5, 5])
    labels = cluster(x)
    firsts = [int(np.flatnonzero(labels == k)[0]) for k in range(labels.max() + 1)]
    assert firsts == sorted(firsts) and labels[0] == 0


def test_contradictory_counts_are_refused():
    with pytest.raises(UsageError):
        SpeakerCount.of(2, 1, None)
    with pytest.raises(UsageError):
        SpeakerCount.of(None, 4, 2)


@pytest.mark.parametrize("args", [["--speakers", "2", "--min-speakers", "1"],
                                  ["--speakers", "2", "--max-speakers", "3"],
                                  ["--min-speakers", "3", "--max-speakers", "2"],
                                  ["--speakers", "0"], ["--clustering", "kmeans"],
                                  ["--output", "x.npz"]])
def test_contradictory_options_exit_2(args, tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    result = run_audio("diarize", wav, *args)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1


def test_top_speakers_follow_the_count():
    score = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.6], [0.0, 0.0, 0.0]])
    active = activity.top_speakers(score, np.array([1, 2, 1]))
    assert active.tolist() == [[True, False, False], [False, True, True],
                               [False, False, False]]
    one = activity.exclusive(active, score)
    assert one.sum(axis=1).tolist() == [1, 1, 0] and one[1, 1]


def test_overlap_add_means_over_covering_chunks():
    from audio_cli.diarization.chunks import OverlapAdd

    chunks = np.ones((2, 4, 1))
    chunks[1] *= 3
    grid = OverlapAdd(0, 6, 1)
    for chunk, offset in zip(chunks, [0, 2], strict=True):
        grid.add(offset, chunk)
    assert grid.mean()[:, 0].tolist() == [1, 1, 2, 2, 3, 3]


def test_runs_become_turns_with_short_gaps_filled():
    grid = activity.FrameGrid(0.1, 0.1)
    active = np.zeros((30, 1), dtype=bool)
    active[2:10, 0] = active[10:11, 0] = True  # one run
    active[20:25, 0] = True
    turns = activity.to_turns(active, grid, "u", ["A"], 3.0, min_gap=0.05)
    assert [(t.start, t.end) for t in turns] == [(0.2, 1.1), (2.0, 2.5)]
    merged = activity.to_turns(active, grid, "u", ["A"], 3.0, min_gap=1.0)
    assert [(t.start, t.end) for t in merged] == [(0.2, 2.5)]


def split_speaker(similarity: float, seed: int = 1):
    """Three speakers' vectors whose first speaker comes as two groups whose centres have
    cosine `similarity` (one voice in two conditions); labels 0, 0, 1, 2 per group."""
    rng = np.random.default_rng(seed)
    dim = 64
    base = rng.standard_normal((3, dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    side = rng.standard_normal(dim)
    side -= (side @ base[0]) * base[0]
    side /= np.linalg.norm(side)
    angle = np.arccos(similarity) / 2
    centres = [np.cos(angle) * base[0] + np.sin(angle) * side,
               np.cos(angle) * base[0] - np.sin(angle) * side, base[1], base[2]]
    x = np.concatenate([c + rng.standard_normal((15, dim)) * 0.05 / np.sqrt(dim)
                        for c in centres])
    return x, np.repeat([0, 0, 1, 2], 15), np.repeat([0, 1, 2, 3], 15)


def test_groups_with_near_identical_means_are_one_speaker():
    """Four tight groups (so each method sees four), two of them one voice (means at cosine
    0.85): the automatic count merges them into three speakers; groups at cosine 0.3 stay
    apart, and so do near ones when the count is exact or at least 4."""
    x, speakers, groups4 = split_speaker(0.85)
    for method in ("ahc", "spectral"):
        assert same_partition(cluster(x, method=method, threshold=0.9), speakers)
        assert same_partition(cluster(x, SpeakerCount(exact=4), method), groups4)
        assert same_partition(cluster(x, SpeakerCount(low=4), method, threshold=0.9), groups4)
    x, _, groups4 = split_speaker(0.3)
    assert same_partition(cluster(x, method="ahc", threshold=0.9), groups4)


def test_speaker_count_rounds_up_from_0_3():
    """k speakers where the mean expected count exceeds k - 1 + 0.3: quiet speech (0.4) and
    half-heard overlap (1.4) count, which rounding to the nearest integer dropped."""
    expected = np.array([0.0, 0.29, 0.31, 0.4, 0.6, 1.0, 1.29, 1.31, 1.4, 2.0, 2.5])
    assert activity.speaker_count(expected).tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 3]
