"""NVIDIA NeMo speaker models (.nemo) against NeMo itself: SpeakerNet-M, SpeakerNet-L, ECAPA-TDNN
and TitaNet-S, random weights, made and embedded by NeMo's own classes (tests/nemo_reference.py,
run once per session in NeMo's environment), then converted and embedded here torch-free.

NeMo lives in its own virtual environment (.venv-nemo, or $AUDIO_NEMO_PYTHON): it would
downgrade packages of this one. Without it these tests skip and say so.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import run_audio
from platforms import MLX_PLATFORM, NO_MLX_REASON

from audio_cli.frontend.fbank import fbank
from audio_cli.frontend.mel import mel_matrix
from audio_cli.models.convert import convert_checkpoint
from audio_cli.models.convert_nemo import read_nemo
from audio_cli.pipeline.speaker import WeSpeaker
from engines.errors import ModelError
from engines.model import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).with_name("nemo_reference.py")
MODELS = ("titanet-s", "speakernet-m", "speakernet-l", "ecapa")
MIN_COSINE = 0.9999
LONG_SECONDS = 30.0
SPEECH = "data/speech/librispeech-test-other-10x10"
# MLX on Linux is slow (12 min for the 4 models x 10 files here; about 2 s per second of
# audio for ECAPA): every model on the 2 shortest files, and the long one with the model
# cheapest on it (with the others it cost 3 min of CI). ONNX and the MIL interpreter run every
# file with every model (under 15 s a model).
MLX_SHORT_FILES = 2
MLX_LONG_MODELS = ("titanet-s",)


def nemo_python() -> Path | None:
    """NeMo's python: $AUDIO_NEMO_PYTHON, else .venv-nemo/bin/python in the repository."""
    named = os.environ.get("AUDIO_NEMO_PYTHON")
    path = Path(named) if named else ROOT / ".venv-nemo" / "bin" / "python"
    return path if path.exists() else None


def _speech_files(shared_dir: Path, out: Path) -> list[Path]:
    """Nine utterances of nine speakers, and one of at least LONG_SECONDS (one speaker's
    utterances joined), as float WAV files both sides read alike."""
    speakers = sorted(p for p in (shared_dir / SPEECH).iterdir() if p.is_dir())
    files = []
    for index, speaker in enumerate(speakers[:9]):
        samples, rate = sf.read(sorted(speaker.glob("*.flac"))[0], dtype="float32")
        files.append(out / f"s{index}.wav")
        sf.write(files[-1], samples, rate, subtype="FLOAT")
    pieces, total = [], 0
    for flac in sorted(speakers[9].glob("*.flac")):
        samples, rate = sf.read(flac, dtype="float32")
        pieces.append(samples)
        total += len(samples)
        if total >= LONG_SECONDS * rate:
            break
    files.append(out / "long.wav")
    sf.write(files[-1], np.concatenate(pieces), rate, subtype="FLOAT")
    return files


class Reference:
    """The .nemo files NeMo wrote, its embeddings of `files`, and their converted copies."""

    def __init__(self, directory: Path, files: list[Path]):
        self.directory = directory
        self.files = files
        self.converted: dict[str, Path] = {}

    def nemo(self, model: str) -> Path:
        return self.directory / f"{model}.nemo"

    def embeddings(self, model: str) -> np.ndarray:
        rows = np.load(self.directory / f"{model}.npy")
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def model_dir(self, model: str) -> Path:
        if model not in self.converted:
            self.converted[model] = convert_checkpoint(self.nemo(model),
                                                       self.directory / f"{model}-converted")
        return self.converted[model]

    def shortest(self, count: int) -> list[int]:
        return sorted(range(len(self.files)), key=lambda i: sf.info(self.files[i]).frames)[:count]


@pytest.fixture(scope="session")
def reference(shared_dir, tmp_path_factory) -> Reference:
    """NeMo run once (its import alone takes seconds): every model, every file."""
    python = nemo_python()
    if python is None:
        pytest.skip("NeMo is not installed: make a .venv-nemo with `pip install -e '.[nemo]'` "
                    "(CONTRIBUTING.md, NeMo's environment) or set AUDIO_NEMO_PYTHON")
    out = tmp_path_factory.mktemp("nemo")
    files = _speech_files(shared_dir, out)
    run = subprocess.run([str(python), str(REFERENCE), str(out), ",".join(map(str, files))],
                         capture_output=True, text=True, timeout=1800)
    if run.returncode != 0 and "ModuleNotFoundError" in run.stderr:
        pytest.skip(f"{python} cannot import NeMo: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr[-3000:]
    return Reference(out, files)


def _cosines(ref: Reference, model: str, engine: str, indices: list[int]) -> list[float]:
    speaker = WeSpeaker.from_pretrained(ref.model_dir(model), engine)
    expected = ref.embeddings(model)
    return [float(speaker.embed(ref.files[i]) @ expected[i]) for i in indices]


def test_reference_embeddings_depend_on_the_input(reference):
    """Random models can map every input to nearly one vector, which would make the cosine
    checks below empty: the reference's files must be told apart."""
    assert max(sf.info(f).duration for f in reference.files) >= LONG_SECONDS
    for model in MODELS:
        e = reference.embeddings(model)
        off_diagonal = (e @ e.T)[~np.eye(len(e), dtype=bool)]
        assert off_diagonal.min() < 0.99, model


@pytest.mark.parametrize("model", MODELS)
def test_onnx_embeddings_match_nemo(reference, model):
    cosines = _cosines(reference, model, "onnx", list(range(len(reference.files))))
    print(f"{model} onnx: min cosine {min(cosines):.10f} over {len(cosines)} files")
    assert min(cosines) >= MIN_COSINE, cosines


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ["mlx", "coreml"])
def test_other_engines_match_nemo(reference, model, engine):
    if engine == "mlx" and not MLX_PLATFORM:
        pytest.skip(NO_MLX_REASON)
    if engine == "coreml":  # an optional package (pip install 'audio-speaker[coreml]')
        pytest.importorskip("coremltools", reason="coremltools is not installed")
    every = list(range(len(reference.files)))
    longest = max(every, key=lambda i: sf.info(reference.files[i]).frames)
    files = (every if engine == "coreml" else
             [*reference.shortest(MLX_SHORT_FILES), *([longest] if model in MLX_LONG_MODELS
                                                      else [])])
    cosines = _cosines(reference, model, engine, files)
    print(f"{model} {engine}: min cosine {min(cosines):.10f} over {len(cosines)} files")
    assert min(cosines) >= MIN_COSINE, cosines


@pytest.mark.parametrize("model", ("titanet-s", "speakernet-m"))
def test_mel_filterbank_is_nemos(reference, model):
    """The slaney triangles computed here equal the filterbank NeMo stored in the checkpoint
    (librosa's, preprocessor.featurizer.fb)."""
    _, tensors = read_nemo(reference.nemo(model))
    stored = tensors["preprocessor.featurizer.fb"][0]  # (bins, n_fft/2 + 1)
    frontend = ModelConfig.load(reference.model_dir(model)).frontend
    ours = mel_matrix(frontend.num_mel_bins, frontend.fft_size, frontend.sample_rate,
                      frontend.low_freq, frontend.high_freq, frontend.mel_scale)
    np.testing.assert_allclose(ours.T, stored[:, :-1], rtol=1e-5, atol=1e-8)
    assert np.all(stored[:, -1] == 0)  # the Nyquist bin, left out here


def test_model_option_takes_a_nemo_file(reference, tmp_path):
    """`audio embed-speaker --model FILE.nemo` converts it once into the user cache and embeds
    as NeMo does."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = ["embed-speaker", "--model", reference.nemo("titanet-s"), "--json",
               reference.files[0]]
    for _ in range(2):  # the second run reuses the cached conversion
        run = run_audio(*command, env=env)
        assert run.returncode == 0, run.stderr
        vector = next(np.array(v) for v in json.loads(run.stdout).values()
                      if isinstance(v, list) and len(v) > 2)
        assert float(vector @ reference.embeddings("titanet-s")[0]) >= MIN_COSINE
    assert len(list((tmp_path / "cache").rglob("model.safetensors"))) == 1


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(("content", "message"), [
    (b"not a tar archive at all", "not a readable tar archive"),
    ({"model_weights.ckpt": b"x"}, "no model_config.yaml"),
    ({"model_config.yaml": b"a: 1\n"}, "no model_weights.ckpt"),
])
def test_bad_nemo_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.nemo"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _tar(path, content)
    with pytest.raises(ModelError, match=message):
        convert_checkpoint(path, tmp_path / "out")
    run = run_audio("convert", path, tmp_path / "out2")
    assert run.returncode != 0
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr


def test_features_are_normalised_per_bin(reference):
    """The converted front-end normalises each bin over the clip, as NeMo's per_feature."""
    frontend = ModelConfig.load(reference.model_dir("titanet-s")).frontend
    samples, _ = sf.read(reference.files[0], dtype="float32")
    features = fbank(samples, frontend)
    assert features.shape == (len(samples) // 160, 80)
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(features.std(axis=0, ddof=1), 1, atol=1e-3)


def test_known_nemo_model_download_is_hash_checked(tmp_path, monkeypatch):
    """A downloaded .nemo whose SHA-256 is not the one the hub records is refused."""
    import huggingface_hub

    from audio_cli.models import nemo

    fake = tmp_path / "model.nemo"
    fake.write_bytes(b"not the published file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(nemo, "_hub_sha256", lambda repo, name: "0" * 64)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: str(fake))
    with pytest.raises(ModelError, match="is not the hub's"):
        nemo.resolve_hub_nemo("nvidia/speakerverification_en_titanet_large", "x.nemo")


def test_titanet_large_from_the_hub(tmp_path, monkeypatch):
    """`--model titanet-large`: downloaded, hash-checked, converted (needs the hub)."""
    from audio_cli.models.registry import resolve_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        _, directory = resolve_model("titanet-large", "onnx")
    except ModelError as exc:
        if "Hugging Face hub" in str(exc) or "cannot download" in str(exc):
            pytest.skip(f"the Hugging Face hub cannot be reached here: {exc}")
        raise
    config = ModelConfig.load(directory)
    assert config.model_type == "nemo_speaker" and config.embedding_dim == 192


def test_yaml_references_are_resolved():
    """NeMo's configs refer to other keys (`${model_defaults.filters}`, `${model.x}`)."""
    from audio_cli.models.convert_nemo import _resolve

    root = {"model_defaults": {"filters": 256}, "n": 3,
            "block": {"filters": "${model_defaults.filters}", "k": ["${model.n}", 5]}}
    assert _resolve(root, root)["block"] == {"filters": 256, "k": [3, 5]}
    with pytest.raises(ModelError, match="cannot resolve"):
        _resolve({"a": "${nowhere.x}"}, {})
