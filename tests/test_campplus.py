"""CAM++ (3D-Speaker): conversion, front-end options, engines against each other and
against the reference implementation (speakerlab-slim + torch), and speaker separation on real
LibriSpeech test-other speech.

Run with `-s` to see the measured cosines and the separation figures.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from campplus_reference import Reference
from platforms import needs_mlx

from audio_cli.frontend.audio import load_audio
from audio_cli.frontend.fbank import fbank
from audio_cli.models.convert import ATTRIBUTION_FILE, convert_checkpoint
from audio_cli.pipeline.speaker import WeSpeaker
from engines import build_graph
from engines.errors import InputAudioError, ModelError
from engines.model import CAMPPLUS_MODEL_TYPE, ModelConfig

SPEECH_DIR = "data/speech/librispeech-test-other-10x10"
EMBEDDING_DIM = 192
REFERENCE_COSINE = 0.999  # ours (numpy fbank + ONNX) vs 3D-Speaker's fbank + torch, per file
ENGINE_COSINE = 0.9999  # ONNX vs MLX on the same features
FILES_PER_SPEAKER = 4  # the shortest ones, to keep the run short
MLX_FILES = 2  # MLX on Linux runs on a slow CPU path
COREML_FILES_PER_SPEAKER = 2  # the first ones by name: 20 files, 2.4 to 15 s
COREML_COSINE = {"float32": 0.9999, "float16": 0.999, "int8": 0.99}  # package vs ONNX, per file


@pytest.fixture(scope="module")
def checkpoint(campplus_checkpoint) -> Path:
    return campplus_checkpoint


@pytest.fixture(scope="module")
def model_dir(campplus_dir) -> Path:
    return campplus_dir


@pytest.fixture(scope="module")
def onnx_model(model_dir) -> WeSpeaker:
    return WeSpeaker.from_pretrained(model_dir, engine="onnx")


@pytest.fixture(scope="module")
def speech(shared_dir) -> dict[str, list[Path]]:
    """Speaker id -> the FILES_PER_SPEAKER shortest files of that speaker."""
    import soundfile as sf

    root = shared_dir / SPEECH_DIR
    if not root.is_dir():
        pytest.skip(f"{root} is not present")
    by_speaker: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.glob("*/*.flac")):
        by_speaker[path.parent.name].append(path)
    return {speaker: sorted(paths, key=lambda p: sf.info(str(p)).frames)[:FILES_PER_SPEAKER]
            for speaker, paths in sorted(by_speaker.items())}


@pytest.fixture(scope="module")
def onnx_vectors(onnx_model, speech) -> dict[Path, np.ndarray]:
    return {path: onnx_model.embed(path) for paths in speech.values() for path in paths}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------ conversion


def test_converted_config_carries_the_campplus_front_end(model_dir):
    config = ModelConfig.load(model_dir)
    assert config.model_type == CAMPPLUS_MODEL_TYPE
    assert config.embedding_dim == EMBEDDING_DIM
    assert config.layers == (12, 24, 16)
    assert config.frontend.window == "povey"
    assert config.frontend.input_scale == 1.0
    assert config.frontend.num_mel_bins == config.n_mels == 80
    assert config.license == "Apache-2.0"
    stored = json.loads((model_dir / "config.json").read_text())
    assert stored["frontend"]["window"] == "povey" and stored["frontend"]["input_scale"] == 1.0


def test_converted_directory_keeps_the_apache_attribution(model_dir):
    text = (model_dir / ATTRIBUTION_FILE).read_text()
    assert "Apache License, Version 2.0" in text
    assert "3D-Speaker" in text and "campplus_cn_en_common.pt" in text


def test_convert_refuses_to_overwrite(checkpoint, model_dir):
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(ModelError, match="will not overwrite"):
        convert_checkpoint(checkpoint, model_dir)
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_graph_uses_every_converted_tensor(model_dir):
    from engines.model import load_safetensors

    tensors = load_safetensors(model_dir / "model.safetensors")
    graph = build_graph(ModelConfig.load(model_dir))
    assert set(graph.weight_names()) == set(tensors)


def test_front_end_follows_the_model_config(model_dir, speech):
    """The CAM++ config's front-end equals kaldi-native-fbank with the same options, and
    differs from the WeSpeaker one (Hamming, x32768) on the same audio."""
    from test_features import check_close, knf_log_mel

    from audio_cli.frontend.fbank import apply_cmn
    from engines.model import FrontendConfig

    config = ModelConfig.load(model_dir).frontend
    samples = load_audio(next(iter(speech.values()))[0], 16000).samples
    ours = fbank(samples, config)
    check_close(ours, apply_cmn(knf_log_mel(samples, config)), "campplus config vs knf")
    wespeaker = fbank(samples, FrontendConfig())
    assert np.abs(ours - wespeaker).max() > 0.1


# ------------------------------------------------------------------------------ engines


def test_vectors_are_192_dim_unit_vectors(onnx_vectors):
    for vector in onnx_vectors.values():
        assert vector.shape == (EMBEDDING_DIM,)
        assert np.isfinite(vector).all()
        assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


@needs_mlx
def test_onnx_and_mlx_agree_on_real_speech(model_dir, onnx_model, speech):
    mlx_model = WeSpeaker.from_pretrained(model_dir, engine="mlx")
    for speaker in list(speech)[:MLX_FILES]:
        features = onnx_model.features(load_audio(speech[speaker][0], 16000))
        a = onnx_model.embed_features(features)
        b = mlx_model.embed_features(features)
        print(f"\n  ONNX vs MLX {speech[speaker][0].name}: cosine {cosine(a, b):.7f}")
        assert cosine(a, b) >= ENGINE_COSINE


@pytest.fixture(scope="module")
def first_files_onnx(shared_dir, onnx_model) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """The first COREML_FILES_PER_SPEAKER files (sorted) of each speaker (sorted): features and
    the ONNX engine's vector."""
    root = shared_dir / SPEECH_DIR
    if not root.is_dir():
        pytest.skip(f"{root} is not present")
    speakers = sorted(p for p in root.iterdir() if p.is_dir())
    files = [f for s in speakers for f in sorted(s.glob("*.flac"))[:COREML_FILES_PER_SPEAKER]]
    out = {}
    for path in files:
        features = onnx_model.features(load_audio(path, 16000))
        out[path] = features, onnx_model.embed_features(features)
    return out


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("precision", list(COREML_COSINE))
def test_core_ml_package_agrees_with_onnx_on_real_speech(model_dir, first_files_onnx, tmp_path,
                                                         precision):
    """The exported ML Program (run by the MIL interpreter off macOS) vs the ONNX engine."""
    import io

    pytest.importorskip("coremltools", reason="coremltools is not installed")
    from engines.coreml_engine import CoreMLEngine
    from engines.model import WEIGHTS_FILE, Weights

    engine = CoreMLEngine(ModelConfig.load(model_dir), Weights(model_dir / WEIGHTS_FILE),
                          cache_dir=tmp_path, precision=precision, log=io.StringIO())
    cosines = {path.name: cosine(engine.embed(features[None])[0], expected)
               for path, (features, expected) in first_files_onnx.items()}
    values = np.array(list(cosines.values()))
    print(f"\n  Core ML {precision} vs ONNX over {len(values)} files: min cosine "
          f"{values.min():.7f} (1 - {1 - values.min():.1e}), median {np.median(values):.7f} "
          f"(1 - {1 - np.median(values):.1e})")
    assert len(values) == 10 * COREML_FILES_PER_SPEAKER
    assert values.min() >= COREML_COSINE[precision], cosines


def test_shortest_input_the_network_accepts(onnx_model):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((onnx_model.min_frames, 80)).astype(np.float32)
    assert np.isfinite(onnx_model.embed_features(features)).all()
    with pytest.raises(InputAudioError, match="too few feature frames"):
        onnx_model.embed_features(features[:-1])


@pytest.fixture(scope="module")
def reference(checkpoint) -> Reference:
    """3D-Speaker's implementation; skips (with the reason) when torch/speakerlab are absent."""
    return Reference(checkpoint)


def test_matches_the_reference_implementation(reference, onnx_vectors, speech):
    """Whole pipeline (our decode, fbank, ONNX) vs 3D-Speaker's fbank + CAMPPlus in torch."""
    files = [paths[0] for paths in speech.values()] + [paths[1] for paths in speech.values()]
    cosines = []
    for path in files:
        expected = reference.embed(load_audio(path, 16000).samples)
        cosines.append(cosine(onnx_vectors[path], expected))
    print(f"\n  vs reference over {len(files)} files: min cosine 1 - {1 - min(cosines):.1e}, "
          f"median 1 - {1 - np.median(cosines):.1e}")
    assert len(files) >= 10
    by_file = dict(zip((p.name for p in files), cosines, strict=True))
    assert min(cosines) >= REFERENCE_COSINE, by_file


def test_separates_the_ten_test_other_speakers(onnx_vectors, speech):
    """Same-speaker pairs score far above different-speaker pairs; nearest neighbours agree."""
    paths = [p for ps in speech.values() for p in ps]
    labels = np.array([p.parent.name for p in paths])
    vectors = np.stack([onnx_vectors[p] for p in paths]).astype(np.float64)
    scores = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(paths), dtype=bool)
    target, nontarget = scores[same & off_diagonal], scores[~same]
    np.fill_diagonal(scores, -np.inf)
    nearest_right = float(np.mean(labels[scores.argmax(axis=1)] == labels))
    print(f"\n  {len(paths)} files, {len(set(labels))} speakers: mean target {target.mean():.3f}, "
          f"mean non-target {nontarget.mean():.3f}, nearest-neighbour accuracy "
          f"{nearest_right:.3f}")
    assert len(set(labels)) == 10
    assert target.mean() - nontarget.mean() > 0.3
    assert nearest_right >= 0.9
    # every speaker's mean same-speaker score beats its best different-speaker mean
    for speaker in set(labels):
        rows = labels == speaker
        own = scores[np.ix_(rows, rows)][np.isfinite(scores[np.ix_(rows, rows)])].mean()
        others = max(scores[np.ix_(rows, labels == o)].mean() for o in set(labels) - {speaker})
        assert own > others, speaker


def test_graph_is_not_time_local_so_no_padded_batches(model_dir, onnx_model):
    from engines.errors import EngineError

    graph = build_graph(ModelConfig.load(model_dir))
    assert not graph.time_local
    assert graph.time_stride == 2
    assert not onnx_model.inference.splits_exactly  # neither padded batches nor chunks
    features = np.zeros((2, 50, 80), dtype=np.float32)
    with pytest.raises(EngineError, match="padded batches"):
        onnx_model.engine.embed(features, np.array([50, 40]))


def test_clips_of_different_lengths_equal_each_clip_alone(onnx_model, speech):
    """The many-clip path groups CAM++ clips by equal length only, so nothing is padded."""
    clips = [onnx_model.features(load_audio(paths[0], 16000)) for paths in speech.values()][:3]
    clips.append(clips[0][:-7])
    together = onnx_model.embed_features(clips)
    for clip, vector in zip(clips, together, strict=True):
        assert cosine(onnx_model.embed_features(clip), vector) >= 0.99999


def test_checkpoint_missing_a_tensor_is_a_model_error(checkpoint, tmp_path):
    from torchzip import write_torch_zip

    from audio_cli.models.torch_checkpoint import read_torch_state_dict

    state = read_torch_state_dict(checkpoint)
    missing = "xvector.block2.tdnnd3.nonlinear2.batchnorm.running_var"
    del state[missing]
    source = write_torch_zip(tmp_path / "broken.pt", state)
    with pytest.raises(ModelError, match=missing):
        convert_checkpoint(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
