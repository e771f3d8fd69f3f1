"""Run a Core ML model whose input length is one of a fixed set, without padding or cutting.

The hub's compiled `wespeaker.mlmodelc` (aufklarer/WeSpeaker-ResNet34-LM-CoreML) accepts
only T in HUB_FIXED_LENGTHS frames. The Swift tool zero-pads a clip up to the next length
(the zeros enter the pooled statistics) and drops everything past 2000 frames. Here instead:

Plan (`plan_windows`): cover the utterance with windows that all have the largest allowed
length L that fits in the clip, as few as cover it (k = ceil(T / L)), the first starting at
frame 0, the last ending exactly at the last frame, the others evenly spaced between. Where
L does not divide T the windows overlap instead of being padded. Every frame is in some
window, no window reaches past the end, no window holds a frame that is not the clip's, and
there are no short leftover windows (a 20-frame tail would give a noisy embedding). A clip
shorter than the smallest allowed length cannot be run without padding and is an error.
The overlap costs at most twice the work of one pass (T just above an allowed length). (The
greedy plan, "largest length that fits in what is left, last window shifted back", also
covers every frame but leaves small windows at the end.)

Combination (`combine_windows`): the network pools mean and standard deviation over time, so
the exact answer for the whole clip would need each window's pooled statistics (sum and sum
of squares per feature), which a model that outputs only the normalised embedding does not
give. The windows' embeddings are therefore averaged, weighted by duration (window length;
with this plan all windows have the same length, so it is the plain mean), and the mean is
re-normalised to unit length. This is an APPROXIMATION: it is exact when the clip is one
window (T itself is an allowed length) and close to, but not the same as, the whole-clip
embedding otherwise (on the random-weight test fixture, 2.8-4.4 s clips: cosine 0.967-0.992
to the exact embedding; zero-padding as the Swift tool does: 0.67-0.99). The exported-package
path of the Core ML engine (flexible T, one call per clip) is exact and is the default; this
module is only for fixed-length compiled models.

Loading: `--engine coreml --model aufklarer/WeSpeaker-ResNet34-LM-CoreML` (or a directory with
`wespeaker.mlmodelc/` and `config.json`, no weights) makes engines.create_engine build a
CompiledModelRunner; a `--model` with weights keeps the exact exported-package path.

`plan_windows` and `combine_windows` are pure and tested everywhere; `embed_fixed_length`
takes any `predict` callable (tested with the reference interpreter); only
`CompiledModelRunner`, which loads a compiled `.mlmodelc` with coremltools, needs macOS.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from engines.errors import EngineError, InputAudioError

# Input lengths of the hub's compiled model (frames of 10 ms), from the Swift caller.
HUB_FIXED_LENGTHS = (20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000)
HUB_COMPILED_MODEL = "wespeaker.mlmodelc"

Window = tuple[int, int]  # (start frame, length)


def _allowed(allowed_lengths: Sequence[int]) -> list[int]:
    lengths = sorted({int(n) for n in allowed_lengths})
    if not lengths or lengths[0] < 1:
        raise EngineError(f"no usable window lengths in {list(allowed_lengths)}")
    return lengths


def plan_windows(num_frames: int, allowed_lengths: Sequence[int]) -> list[Window]:
    """Windows (start, length), lengths all allowed, covering frames 0..num_frames-1 exactly."""
    lengths = _allowed(allowed_lengths)
    if num_frames < lengths[0]:
        raise InputAudioError(
            f"{num_frames} frames is shorter than the shortest input this fixed-length Core ML "
            f"model accepts ({lengths[0]} frames); it would need padding, which changes the "
            "embedding"
        )
    length = max(n for n in lengths if n <= num_frames)
    count = -(-num_frames // length)  # ceil
    if count == 1:
        return [(0, length)]
    # Starts spread evenly from 0 to num_frames - length; consecutive starts are at most
    # `length` apart because count * length >= num_frames, so nothing falls between windows.
    last = num_frames - length
    return [((i * last + (count - 1) // 2) // (count - 1), length) for i in range(count)]


def window_weights(windows: Sequence[Window]) -> np.ndarray:
    """Each window's weight in the combination: its duration (length in frames)."""
    return np.asarray([length for _, length in windows], dtype=np.float64)


def combine_windows(embeddings: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """Weighted mean of the window embeddings (see the module doc), re-normalised; float32."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or len(embeddings) != len(windows):
        raise EngineError(f"{len(windows)} windows but embeddings of shape {embeddings.shape}")
    mean = window_weights(windows) @ embeddings
    norm = np.linalg.norm(mean)
    if not np.isfinite(norm) or norm == 0.0:
        raise EngineError("the window embeddings cancel out or are not finite; no embedding")
    return (mean / norm).astype(np.float32)


def embed_fixed_length(predict: Callable[[np.ndarray], np.ndarray], features: np.ndarray,
                       allowed_lengths: Sequence[int]) -> np.ndarray:
    """(T, F) features -> (dim,) unit vector, calling `predict` on (1, L, F) windows, L allowed."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise EngineError(f"expected (frames, mel bins) features, got shape {features.shape}")
    windows = plan_windows(len(features), allowed_lengths)
    outputs = []
    for start, length in windows:
        out = np.asarray(predict(features[None, start:start + length]), dtype=np.float32)
        out = out.reshape(-1)
        norm = float(np.linalg.norm(out)) if np.all(np.isfinite(out)) else float("nan")
        if not np.isfinite(norm) or norm == 0.0:
            raise EngineError(
                f"the Core ML model returned a {'zero' if norm == 0.0 else 'non-finite'} "
                f"vector for frames {start}..{start + length - 1}"
            )
        outputs.append(out / norm)
    return combine_windows(np.stack(outputs), windows)


def embed_clips(predict: Callable[[np.ndarray], np.ndarray], features: np.ndarray,
                lengths: np.ndarray | None, allowed_lengths: Sequence[int]) -> np.ndarray:
    """(B, T, F) features -> (B, dim): each clip's first `lengths[i]` frames (all T when
    `lengths` is None) windowed and combined on its own; padding never reaches `predict`."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 3:
        raise EngineError(f"expected (batch, frames, mel bins) features, got {features.shape}")
    if lengths is None:
        lengths = np.full(len(features), features.shape[1])
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.shape != features.shape[:1] or lengths.max(initial=0) > features.shape[1]:
        raise EngineError(f"lengths {lengths.tolist()} do not fit features {features.shape}")
    return np.stack([embed_fixed_length(predict, clip[:n], allowed_lengths)
                     for clip, n in zip(features, lengths, strict=True)])


class CompiledModelRunner:  # pragma: no cover - needs macOS (Core ML)
    """A compiled fixed-length `.mlmodelc` (e.g. the hub's) run through the window plan.

    macOS only, and not exercised in CI: loading and `predict` need Core ML. Input name `mel`
    and output name `embedding` are inferred from the Swift tool's caller; the input is
    given as float32 and Core ML converts it to the model's float16.
    """

    name = "coreml"

    def __init__(self, path: Path, allowed_lengths: Sequence[int] = HUB_FIXED_LENGTHS,
                 input_name: str = "mel", output_name: str = "embedding"):
        if sys.platform != "darwin":
            raise EngineError(
                f"a compiled Core ML model runs only on macOS ({Path(path).name}); here use the "
                "weights (--model aufklarer/WeSpeaker-ResNet34-LM-MLX) with --engine onnx, or "
                "with --engine coreml for the exported package run by the reference interpreter"
            )
        from engines.coreml_import import import_coremltools

        ct = import_coremltools()
        self.path = Path(path)
        self.allowed_lengths = _allowed(allowed_lengths)
        self.input_name, self.output_name = input_name, output_name
        try:
            self.model = ct.models.CompiledMLModel(str(self.path))
        except Exception as exc:
            raise EngineError(f"{self.path}: Core ML cannot load the compiled model ({exc})"
                              ) from None

    def _predict(self, window: np.ndarray) -> np.ndarray:
        try:
            result = self.model.predict({self.input_name: window})
        except Exception as exc:
            raise EngineError(f"Core ML prediction failed on {window.shape[1]} frames ({exc})"
                              ) from None
        if self.output_name not in result:
            raise EngineError(f"the Core ML model has no output {self.output_name!r}")
        return np.asarray(result[self.output_name])

    def embed(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, F) features (+ valid frames per clip) -> (B, dim); see `embed_clips`."""
        return embed_clips(self._predict, features, lengths, self.allowed_lengths)
