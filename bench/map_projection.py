"""How `audio speakers map`'s projection (audio_cli/plots/projection.py) scales with the
number of vectors, and whether it keeps neighbours near.

Run: `python -m bench.map_projection [N ...]` (default 1000 10000 100000). The vectors are
192-dim utterances around N / 100 speakers, made as bench/store_scaling.py makes them (two
utterances of a speaker have cosine ~0.7). Each size runs in a child process of its own:
wall time of `project` (t-SNE on the landmarks, then placing the rest), its peak RSS, and two
checks on 1000 sampled points: the share whose nearest neighbour in 2-D is of the same
speaker (against the same share in the 192-dim space), and the share of their 10 nearest
neighbours in 192 dims that are among their 10 nearest in 2-D.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

DIM = 192
PER_SPEAKER = 100
SAMPLE = 1000


def _vectors(n: int) -> tuple[np.ndarray, np.ndarray]:
    from bench.store_scaling import clustered

    rng = np.random.default_rng(1)
    centres = rng.standard_normal((max(1, n // PER_SPEAKER), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, len(centres), n)
    return clustered(rng, centres, labels), labels


def _child(n: int) -> dict:
    from audio_cli.plots.projection import LANDMARKS, project

    x, labels = _vectors(n)
    start = time.perf_counter()
    y = project(x)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the checks
    sample = np.random.default_rng(3).choice(n, min(SAMPLE, n), replace=False)
    high = x[sample] @ x.T
    high[np.arange(len(sample)), sample] = -np.inf
    low = -((y[sample, None, :] - y[None, :, :]) ** 2).sum(-1)
    low[np.arange(len(sample)), sample] = -np.inf
    near_high = np.argpartition(-high, 10, axis=1)[:, :10]
    near_low = np.argpartition(-low, 10, axis=1)[:, :10]
    kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(near_high, near_low,
                                                                  strict=True)])
    return {"n": n, "seconds": seconds, "landmarks": min(n, LANDMARKS),
            "peak_rss_mib": rss, "load": os.getloadavg()[0],
            "same_speaker_2d": float(np.mean(labels[low.argmax(axis=1)] == labels[sample])),
            "same_speaker_192d": float(np.mean(labels[high.argmax(axis=1)] == labels[sample])),
            "knn10_kept": float(kept)}


def table(sizes: list[int]) -> list[str]:
    lines = ["| vectors | landmarks | time s | peak RSS MiB | nearest in 2-D same speaker | "
             "same in 192-D | 10-NN kept | load (1 min) |", "|---|---|---|---|---|---|---|---|"]
    for n in sizes:  # peak RSS: the child's, up to the end of `project` (the checks after)
        out = subprocess.run([sys.executable, "-m", "bench.map_projection", "--child", str(n)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        lines.append(f"| {r['n']:,} | {r['landmarks']:,} | {r['seconds']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['same_speaker_2d']:.1%} | "
                     f"{r['same_speaker_192d']:.1%} | {r['knn10_kept']:.1%} | "
                     f"{r['load']:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(_child(int(sys.argv[2]))))
    else:
        print("\n".join(table([int(n) for n in sys.argv[1:]] or [1000, 10000, 100000])))
