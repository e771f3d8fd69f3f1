"""Local speaker segmentation: pyannote segmentation-3.0 on fixed chunks of samples.

`open_segmenter()` gives a `Segmenter` whose `frames(chunks)` runs the network (ONNX
Runtime) on a batch of 16 kHz chunks and returns, for each output frame, log-probabilities
over the powerset classes: which of up to `max_speakers` local speakers (speakers of that
chunk only; labels do not carry over between chunks) are active, at most
`speakers_per_frame` at once. `powerset_to_speakers` turns them into 0/1 activity per local
speaker. Frame i of a chunk covers `frame_duration` seconds from `frame_start(i)`, centred
on `frame_centre(i)`, every `frame_step` seconds (from the network's kernels and strides).

pyannote runs the model on 10 s chunks (`chunk_samples`) and pads a shorter last chunk (or
file) with zeros to that length; the caller chooses its chunks. Any length of at least one
receptive field runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_cli.models.segmentation import resolve_segmentation
from engines import create_engine, resolve_engine_name
from engines.errors import InputAudioError, UsageError
from engines.model import WEIGHTS_FILE, ModelConfig, Weights, build_graph, tensor_shapes
from engines.segmentation import FrameTiming, frame_timing, powerset_classes

ENGINES = ("onnx", "mlx")  # the engines that run the segmentation graph; "auto" is onnx:
# MLX steps its LSTM one frame at a time (about 2 s a chunk on a CPU, ONNX Runtime 0.06 s)
# Chunks per engine run. ONNX Runtime, 1 thread, median of 3 runs of 32 chunks: 32.3, 29.6,
# 26.8, 32.3, 32.9, 33.8 ms a chunk in batches of 1, 2, 4, 8, 16, 32 (a batch of 4 keeps its
# LSTM's working set in the caches); larger batches also cost memory (peak RSS 95 MB for 1,
# 177 MB for 8, 459 MB for 32).
BATCH = 4


@dataclass
class Segmenter:
    """A loaded segmentation model (see the module docstring)."""

    engine: object  # an engines TrunkEngine (ONNXEngine or MLXEngine)
    config: ModelConfig
    timing: FrameTiming  # in samples
    directory: str = ""

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def chunk_samples(self) -> int:
        """The chunk length the model was trained on (10 s)."""
        return round(float(self.config.network.get("chunk_seconds", 10.0)) * self.sample_rate)

    @property
    def num_classes(self) -> int:
        return self.config.embedding_dim

    @property
    def max_speakers(self) -> int:
        """Local speakers per chunk."""
        return int(self.config.network.get("speakers", 3))

    @property
    def speakers_per_frame(self) -> int:
        """Local speakers active at once, at most."""
        return int(self.config.network.get("speakers_per_frame", 2))

    @property
    def frame_step(self) -> float:
        """Seconds between consecutive frames."""
        return self.timing.step / self.sample_rate

    @property
    def frame_duration(self) -> float:
        """Seconds of audio each frame reads (its receptive field)."""
        return self.timing.size / self.sample_rate

    def frame_start(self, frame: int | np.ndarray = 0) -> float | np.ndarray:
        """Start (seconds, from the chunk start) of the audio frame(s) `frame` read."""
        return (self.timing.start + np.asarray(frame) * self.timing.step) / self.sample_rate

    def frame_centre(self, frame: int | np.ndarray = 0) -> float | np.ndarray:
        """Middle (seconds, from the chunk start) of the audio frame(s) `frame` read."""
        return self.frame_start(frame) + (self.timing.size - 1) / 2 / self.sample_rate

    def num_frames(self, samples: int | None = None) -> int:
        """Output frames for a chunk of `samples` samples (default: chunk_samples): 589."""
        return self.timing.frames(self.chunk_samples if samples is None else samples)

    def frames(self, chunks: np.ndarray) -> np.ndarray:
        """(B, N) float32 chunks of samples in [-1, 1] -> (B, F, num_classes) float32
        log-probabilities (F = num_frames(N))."""
        x = np.asarray(chunks, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise UsageError(f"segmentation expects a (chunks, samples) array, got {x.shape}")
        if self.num_frames(x.shape[1]) < 1:
            raise InputAudioError(f"a chunk of {x.shape[1]} samples is shorter than what the "
                                  f"segmentation model reads ({self.timing.size} samples)")
        if not np.isfinite(x).all():
            raise InputAudioError("segmentation input holds NaN or infinite samples")
        parts = [self.engine.encode(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def speakers(self, log_probs: np.ndarray) -> np.ndarray:
        """`powerset_to_speakers` with this model's speakers."""
        return powerset_to_speakers(log_probs, self.max_speakers, self.speakers_per_frame)

    def expected_speakers(self, log_probs: np.ndarray) -> np.ndarray:
        """`expected_speakers` with this model's speakers."""
        return expected_speakers(log_probs, self.max_speakers, self.speakers_per_frame)

    def speaker_probabilities(self, log_probs: np.ndarray) -> np.ndarray:
        """`speaker_probabilities` with this model's speakers."""
        return speaker_probabilities(log_probs, self.max_speakers, self.speakers_per_frame)


def powerset_matrix(speakers: int = 3, at_once: int = 2) -> np.ndarray:
    """(classes, speakers) 0/1: the local speakers active in each powerset class, in
    pyannote's class order: {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3} for 3 and 2."""
    classes = powerset_classes(speakers, at_once)
    matrix = np.zeros((len(classes), speakers), dtype=np.float32)
    for row, members in enumerate(classes):
        matrix[row, list(members)] = 1.0
    return matrix


def powerset_to_speakers(log_probs: np.ndarray, speakers: int = 3,
                         at_once: int = 2) -> np.ndarray:
    """(B, F, classes) scores -> (B, F, speakers) float32 0/1: the speakers of each frame's
    most likely class (pyannote's hard powerset-to-multilabel conversion)."""
    matrix = powerset_matrix(speakers, at_once)
    scores = np.asarray(log_probs)
    if scores.shape[-1] != len(matrix):
        raise UsageError(f"{scores.shape[-1]} classes are not the powerset of {speakers} "
                         f"speakers {at_once} at a time ({len(matrix)})")
    return matrix[np.argmax(scores, axis=-1)]


def expected_speakers(log_probs: np.ndarray, speakers: int = 3, at_once: int = 2
                      ) -> np.ndarray:
    """(B, F, classes) log-probabilities -> (B, F) float32: the expected number of speakers
    in each frame, the sum over powerset classes of probability x speakers in the class."""
    sizes = powerset_matrix(speakers, at_once).sum(axis=1)
    return (np.exp(np.asarray(log_probs, dtype=np.float32)) @ sizes).astype(np.float32)


def speaker_probabilities(log_probs: np.ndarray, speakers: int = 3, at_once: int = 2
                          ) -> np.ndarray:
    """(B, F, classes) log-probabilities -> (B, F, speakers) float32: the probability that
    each local speaker talks in each frame (the sum over the classes that hold it)."""
    matrix = powerset_matrix(speakers, at_once)
    return (np.exp(np.asarray(log_probs, dtype=np.float32)) @ matrix).astype(np.float32)


def open_segmenter(model: str | None = None, engine: str = "onnx",
                   threads: int | None = None) -> Segmenter:
    """Load a segmentation model (None: pyannote segmentation-3.0, fetched and converted on
    first use; or a local pytorch_model.bin or converted folder: resolve_segmentation)."""
    name = "onnx" if engine == "auto" else resolve_engine_name(engine)
    if name not in ENGINES:
        raise UsageError(f"the segmentation model runs with --engine {' or '.join(ENGINES)} "
                         f"(not {engine})")
    directory = resolve_segmentation(model)
    config = ModelConfig.load(directory)
    weights = Weights(directory / WEIGHTS_FILE)
    graph = build_graph(config)
    runner = create_engine(name, config, weights, threads=threads, graph=graph)
    timing = frame_timing(graph, tensor_shapes(directory / WEIGHTS_FILE))
    return Segmenter(runner, config, timing, str(directory))
