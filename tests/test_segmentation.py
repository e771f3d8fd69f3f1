"""pyannote segmentation-3.0, converted without torch and run on ONNX Runtime, against what
pyannote's own model computed (tests/fixtures/segmentation, README there), and a random
PyanNet checkpoint against the network written out in numpy (tests/pyannet_reference.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from model_factory import small_config, write_model
from pyannet_reference import pyannet
from torchzip import write_torch_zip

from audio_cli.diarization.segmentation import (
    expected_speakers,
    open_segmenter,
    powerset_matrix,
    powerset_to_speakers,
    speaker_probabilities,
)
from audio_cli.models.convert import convert_checkpoint
from engines.errors import InputAudioError, ModelError, UsageError
from engines.model import ModelConfig

FIXTURES = Path(__file__).parent / "fixtures" / "segmentation"
CHECKPOINT = "models/pyannote-segmentation-3.0/pytorch_model.bin"
# Max abs difference allowed against pyannote: on probabilities everywhere, and on the
# log-probabilities of every class more likely than FLOOR. Below FLOOR (log-probabilities
# down to about -20) float32 rounding alone moves them by up to ~1e-4.
TOLERANCE = 1e-4
FLOOR = 1e-4


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Converted models go to a cache of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def real_segmenter(shared_dir, tmp_path_factory):
    path = shared_dir / CHECKPOINT
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return open_segmenter(str(path), threads=1)


def recorded_clips(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(clips, 160000) samples read from ../shared as the recording read them, and pyannote's
    (clips, 589, 7) log-probabilities."""
    chunks = []
    for clip in json.loads((FIXTURES / "clips.json").read_text(encoding="utf-8")):
        samples, _ = soundfile.read(shared_dir / clip["file"], dtype="float32")
        samples = samples[clip["start"]:clip["start"] + clip["samples"]]
        assert len(samples) == clip["samples"]
        chunks.append(np.pad(samples, (0, clip["padded_to"] - len(samples))))
    return np.stack(chunks), np.load(FIXTURES / "log_probs.npy")


@pytest.mark.shared
def test_onnx_matches_pyannote_on_real_speech(real_segmenter, shared_dir):
    """Two AMI meeting excerpts with overlapping speech, a LibriSpeech clip and a short one
    padded as pyannote pads it. Measured: probabilities within 9e-6, log-probabilities above
    FLOOR within 5e-5 (all: 1.1e-4), the same powerset class in every frame."""
    chunks, expected = recorded_clips(shared_dir)
    got = real_segmenter.frames(chunks)
    assert got.shape == expected.shape == (4, 589, 7)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.exp(got), np.exp(expected), rtol=0, atol=TOLERANCE)
    likely = expected > np.log(FLOOR)
    assert np.abs(got - expected)[likely].max() < TOLERANCE
    assert np.abs(got - expected).max() < 5 * TOLERANCE
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.999
    speakers = powerset_to_speakers(expected)
    assert (speakers.sum(-1) == 2).any()  # the AMI clips do hold overlapping speech


@pytest.mark.shared
def test_expected_speakers_weighs_each_class_by_its_size():
    """Class order {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}: a frame sure of silence expects
    0, sure of one speaker 1, of two 2; half silence and half {1,3} expects 1."""
    probs = np.array([[1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0],
                      [0.5, 0, 0, 0, 0, 0.5, 0], [0.2, 0.3, 0, 0.1, 0.4, 0, 0]])
    with np.errstate(divide="ignore"):
        got = expected_speakers(np.log(probs)[None])
    assert got.shape == (1, 5)
    assert got[0] == pytest.approx([0.0, 1.0, 2.0, 1.0, 0.3 + 0.1 + 0.8])


def test_speaker_probabilities_sum_the_classes_that_hold_each_speaker():
    """Classes {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}: speaker 1 is in classes 1, 4, 5."""
    probs = np.array([[0.2, 0.3, 0, 0.1, 0.4, 0, 0], [0, 0, 0, 0, 0, 0.5, 0.5]])
    with np.errstate(divide="ignore"):
        got = speaker_probabilities(np.log(probs)[None])
    assert got.shape == (1, 2, 3)
    assert got[0, 0] == pytest.approx([0.7, 0.4, 0.1])
    assert got[0, 1] == pytest.approx([0.5, 0.5, 1.0])


def test_frame_timing_is_pyannotes(real_segmenter):
    facts = json.loads((FIXTURES / "pyannote.json").read_text(encoding="utf-8"))
    s = real_segmenter
    assert (s.sample_rate, s.chunk_samples, s.num_classes, s.max_speakers) == (16000, 160000,
                                                                               7, 3)
    assert s.num_frames() == facts["num_frames"] == 589
    assert s.frame_step == pytest.approx(facts["frame_step"], abs=1e-12)
    assert s.frame_duration == pytest.approx(facts["frame_duration"], abs=1e-12)
    assert s.frame_start(0) == pytest.approx(facts["frame_start"], abs=1e-12)
    centres = [c / s.sample_rate for c in facts["frame_centre_samples"]]
    assert s.frame_centre(np.array([0, 1, 588])) == pytest.approx(centres, abs=1e-12)


def test_powerset_mapping():
    """pyannote's class order, as its Powerset(3, 2) reports it (recorded), and by hand."""
    recorded = json.loads((FIXTURES / "pyannote.json").read_text(encoding="utf-8"))
    assert powerset_matrix().tolist() == recorded["powerset_mapping"]
    by_hand = {0: [0, 0, 0], 1: [1, 0, 0], 2: [0, 1, 0], 3: [0, 0, 1], 4: [1, 1, 0],
               5: [1, 0, 1], 6: [0, 1, 1]}
    scores = np.full((2, 7, 7), -5.0, dtype=np.float32)
    for frame in range(7):
        scores[0, frame, frame] = -0.1  # frame k: class k wins
        scores[1, frame, 6 - frame] = -0.1
    got = powerset_to_speakers(scores)
    assert got.shape == (2, 7, 3) and got.dtype == np.float32
    for k, members in by_hand.items():
        assert got[0, k].tolist() == members
        assert got[1, 6 - k].tolist() == members
    with pytest.raises(UsageError):
        powerset_to_speakers(np.zeros((1, 3, 5)))


# ---------------------------------------------------------------- a random PyanNet, no ../shared

BANDS, TAPS, CHANNELS, HIDDEN = 4, 251, 6, 8


def random_pyannet(seed: int = 0) -> dict[str, np.ndarray]:
    """A small PyanNet state dict in pyannote's names and torch's layout (4 sinc bands instead
    of 40, 6 conv channels, 2 LSTM layers of 8, linear 16 x 2, 7 classes)."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    half = TAPS // 2
    t = {"sincnet.wav_norm1d.weight": np.array([1.2], np.float32),
         "sincnet.wav_norm1d.bias": r(1),
         "sincnet.conv1d.0.filterbank.low_hz_": rng.uniform(30, 3000, (BANDS, 1))
         .astype(np.float32),
         "sincnet.conv1d.0.filterbank.band_hz_": rng.uniform(50, 2000, (BANDS, 1))
         .astype(np.float32),
         # asteroid-filterbanks' buffers: the left half of a Hamming window, 2 pi t / sr
         "sincnet.conv1d.0.filterbank.window_": np.hamming(TAPS)[:half].astype(np.float32),
         "sincnet.conv1d.0.filterbank.n_": (2 * np.pi * np.arange(-half, 0)[None] / 16000)
         .astype(np.float32)}
    for block, (cin, cout) in enumerate([(None, 2 * BANDS), (2 * BANDS, CHANNELS),
                                         (CHANNELS, CHANNELS)]):
        if block:
            t[f"sincnet.conv1d.{block}.weight"] = r(cout, cin, 5)
            t[f"sincnet.conv1d.{block}.bias"] = r(cout)
        t[f"sincnet.norm1d.{block}.weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        t[f"sincnet.norm1d.{block}.bias"] = r(cout)
    for layer in range(2):
        for d in ("", "_reverse"):
            width = CHANNELS if layer == 0 else 2 * HIDDEN
            t[f"lstm.weight_ih_l{layer}{d}"] = r(4 * HIDDEN, width)
            t[f"lstm.weight_hh_l{layer}{d}"] = r(4 * HIDDEN, HIDDEN)
            t[f"lstm.bias_ih_l{layer}{d}"] = r(4 * HIDDEN)
            t[f"lstm.bias_hh_l{layer}{d}"] = r(4 * HIDDEN)
    t["linear.0.weight"], t["linear.0.bias"] = r(16, 2 * HIDDEN), r(16)
    t["linear.1.weight"], t["linear.1.bias"] = r(16, 16), r(16)
    t["classifier.weight"], t["classifier.bias"] = r(7, 16, scale=2.0), r(7)
    return t


def write_checkpoint(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A Lightning-style checkpoint: state_dict and hyper_parameters, as pyannote saves them."""
    hyper = {"sample_rate": 16000, "num_channels": 1, "sincnet": {"stride": 10},
             "lstm": {"hidden_size": HIDDEN, "num_layers": 2, "bidirectional": True,
                      "monolithic": True}, "linear": {"hidden_size": 16, "num_layers": 2}}
    return write_torch_zip(path, {"state_dict": tensors, "hyper_parameters": hyper})


def speech_like(samples: int, seed: int = 1) -> np.ndarray:
    """Noise with a few loud and quiet stretches (so the instance norms see some structure)."""
    rng = np.random.default_rng(seed)
    envelope = np.repeat(rng.uniform(0.01, 0.5, samples // 800 + 1), 800)[:samples]
    return (rng.standard_normal(samples) * envelope).astype(np.float32)


def test_random_checkpoint_converts_and_matches_numpy_pyannet(tmp_path):
    tensors = random_pyannet()
    checkpoint = write_checkpoint(tmp_path / "pytorch_model.bin", tensors)
    folder = convert_checkpoint(checkpoint, tmp_path / "model")
    config = ModelConfig.load(folder)
    assert config.model_type == "pyannote_segmentation" and config.embedding_dim == 7
    assert config.network["lstm_layers"] == 2 and config.network["bidirectional"]
    segmenter = open_segmenter(str(folder), threads=1)
    x = np.stack([speech_like(16000, seed) for seed in (1, 2, 3)])  # 1 s each
    got = segmenter.frames(x)
    frames = segmenter.num_frames(16000)
    # no padding anywhere: 1575 after the sinc conv, then pool 525, conv 521, pool 173,
    # conv 169, pool 56
    n = (16000 - 251) // 10 + 1
    for k in (3, 5, 3, 5, 3):
        n = n - k + 1 if k == 5 else (n - k) // 3 + 1
    assert got.shape == (3, frames, 7) and frames == n == 56
    for row in range(3):
        expected = pyannet(x[row], tensors)
        np.testing.assert_allclose(got[row], expected, rtol=0, atol=5e-5)  # measured 1.1e-5
    # a batch gives each chunk what it gives alone; every frame's probabilities sum to 1
    np.testing.assert_allclose(segmenter.frames(x[1:2])[0], got[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, atol=1e-5)


def test_a_checkpoint_path_is_converted_once_into_the_cache(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "pytorch_model.bin", random_pyannet(3))
    first = open_segmenter(str(checkpoint))
    second = open_segmenter(str(checkpoint))
    assert first.directory == second.directory
    assert Path(first.directory).is_relative_to(tmp_path / "cache")
    assert open_segmenter(str(tmp_path)).directory == first.directory  # its folder works too


def test_too_short_or_bad_chunks_are_refused(tmp_path):
    segmenter = open_segmenter(str(write_checkpoint(tmp_path / "m.bin", random_pyannet())))
    with pytest.raises(InputAudioError, match="shorter"):
        segmenter.frames(np.zeros((1, 990), np.float32))
    assert segmenter.frames(np.zeros((1, 991), np.float32)).shape == (1, 1, 7)
    with pytest.raises(UsageError):
        segmenter.frames(np.zeros(16000, np.float32))
    with pytest.raises(InputAudioError, match="NaN"):
        segmenter.frames(np.full((1, 16000), np.nan, np.float32))


def test_what_is_not_a_segmentation_model_is_one_model_error(tmp_path, small_model_dir):
    text = tmp_path / "notes.bin"
    text.write_text("not a model\n")
    embedding = write_torch_zip(tmp_path / "embedding.bin",
                                {"state_dict": {"conv1.weight": np.zeros((2, 1, 3, 3),
                                                                         np.float32)}})
    for model, words in ((text, "not a torch.save"), (embedding, "not a pyannote segmentation"),
                         (small_model_dir, "not a speaker-segmentation model"),
                         (tmp_path / "missing.bin", "no such file")):
        with pytest.raises(ModelError, match=words) as caught:
            open_segmenter(str(model))
        assert "\n" not in str(caught.value)


def test_engines_that_cannot_run_it_are_refused_first(tmp_path):
    with pytest.raises(UsageError, match="onnx or mlx"):
        open_segmenter(str(tmp_path / "never-read.bin"), engine="coreml")


def test_an_embedding_folder_is_not_taken_for_a_segmenter(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    write_model(folder, small_config())
    with pytest.raises(ModelError, match="wespeaker_resnet34 model"):
        open_segmenter(str(folder))


def test_offline_without_a_cached_copy_says_the_way_out(tmp_path):
    """The default model with no hub: one line, exit-4 kind, naming a local copy as the way
    out (a child process: huggingface_hub reads HF_HUB_OFFLINE at import)."""
    code = ("from audio_cli.diarization.segmentation import open_segmenter\n"
            "from engines.errors import ModelError\n"
            "try:\n    open_segmenter()\nexcept ModelError as exc:\n    print(exc)\n")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    assert "pyannote/segmentation-3.0" in lines[0] and "offline" in lines[0]
    assert "pass --segmentation PATH, a local copy" in lines[0]


def test_embedding_commands_refuse_a_segmentation_model(tmp_path):
    """A converted segmentation model given as a speaker-embedding model: exit 4, one line."""
    from cli_run import run_audio
    from signals import voiced, write_wav

    folder = convert_checkpoint(write_checkpoint(tmp_path / "seg.bin", random_pyannet()),
                                tmp_path / "seg")
    wav = write_wav(tmp_path / "a.wav", voiced(2.0))
    result = run_audio("embed-speaker", wav, "--model", folder)
    assert result.returncode == 4
    assert result.stdout == ""
    assert "speaker-segmentation model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
