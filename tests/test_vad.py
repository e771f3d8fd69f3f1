"""Voice-activity detection before embedding (`--vad`, the `vad` argument): speech regions,
streamed speech, padded real speech, no speech, too little speech, windows, --no-vad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import run_audio
from signals import write_wav

from audio_cli import cosine_similarity
from audio_cli.frontend import vad
from audio_cli.frontend.audio import open_audio
from audio_cli.frontend.fbank import fbank
from audio_cli.pipeline.speaker import WeSpeaker

RATE = 16000
SPEECH = "data/speech/librispeech-test-other-10x10"
CAMPPLUS = "models/campplus-zh-en-common/campplus_cn_en_common.pt"
FRAME = vad.FRAME_SAMPLES


@pytest.fixture(scope="module")
def speech(shared_dir) -> np.ndarray:
    """A 15 s LibriSpeech test-other utterance, 16 kHz float32."""
    x, rate = sf.read(str(shared_dir / SPEECH / "1688/1688-142285-0000.flac"), dtype="float32")
    assert rate == RATE
    return x


@pytest.fixture(scope="module")
def other_speech(shared_dir) -> np.ndarray:
    """An utterance of another speaker."""
    x, _ = sf.read(str(shared_dir / SPEECH / "1998/1998-15444-0000.flac"), dtype="float32")
    return x


@pytest.fixture(scope="module")
def campplus(shared_dir, tmp_path_factory) -> Path:
    """The real CAM++ model (3D-Speaker), converted."""
    from audio_cli.models.convert import convert_checkpoint

    path = shared_dir / CAMPPLUS
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return convert_checkpoint(path, tmp_path_factory.mktemp("campplus") / "model")


def padded(x: np.ndarray, before: float, after: float) -> np.ndarray:
    """x with digital silence before and after (seconds)."""
    return np.concatenate([np.zeros(int(before * RATE), np.float32), x,
                           np.zeros(int(after * RATE), np.float32)])


def embed(*args) -> tuple[int, str, str]:
    proc = run_audio("embed-speaker", *map(str, args))
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------- regions


# The rule README documents ("Voice-activity rule"): speech starts at probability 0.5 and ends
# after 0.1 s below 0.35; regions under 0.25 s are dropped, the others padded by 0.5 s a side.
PAD = int(0.5 * RATE)


def test_regions_follow_the_probabilities():
    probs = np.array([0.0] * 30 + [0.9] * 20 + [0.4] * 2 + [0.9] * 10 + [0.0] * 40)
    n = len(probs) * FRAME
    # 0.4 sits between the two thresholds: the region goes on through it
    assert vad.speech_regions(probs, n) == [(30 * FRAME - PAD, 62 * FRAME + PAD)]


def test_a_long_pause_splits_and_a_blip_is_dropped():
    gap = 60  # frames below 0.35: 1.9 s, more than the padding of both sides joins
    blip = 2  # frames: 64 ms, under 0.25 s
    probs = np.array([0.9] * 20 + [0.0] * gap + [0.9] * 20 + [0.0] * 60 + [0.9] * blip
                     + [0.0] * 60)
    n = len(probs) * FRAME
    assert vad.speech_regions(probs, n) == [
        (0, 20 * FRAME + PAD),  # padding is clamped at the start
        ((20 + gap) * FRAME - PAD, (40 + gap) * FRAME + PAD)]


def test_silence_padding_is_left_out(speech):
    x = padded(speech, 10.0, 20.0)
    regions = vad.find_speech(x)
    assert regions, "no speech found in a LibriSpeech utterance"
    first, last = regions[0][0], regions[-1][1]
    # no more of the silence than the 0.5 s padding (and a frame) on each side
    assert 9.4 * RATE <= first and last <= (10.0 + len(speech) / RATE + 0.6) * RATE
    inside = vad.total(vad.overlap(regions, 10 * RATE, 10 * RATE + len(speech)))
    assert inside / len(speech) > 0.95  # the utterance's long pauses may go, little else


def test_streamed_speech_equals_the_cut_in_memory(speech, tmp_path):
    x = padded(speech, 3.0, 7.0)
    path = write_wav(tmp_path / "p.wav", x, subtype="FLOAT")
    source = vad.detect_source(open_audio(path), 0.5)
    assert source.regions == vad.find_speech(x)
    whole = vad.cut(x, source.regions)
    for size in (1000, 4096, 1 << 16):
        blocks = list(source.blocks(size))
        assert all(len(b) == size for b in blocks[:-1])
        np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert source.duration == pytest.approx(len(whole) / RATE)
    assert source.recording_duration == pytest.approx(len(x) / RATE)


# ---------------------------------------------------------------- embeddings


def test_vad_gives_back_the_vector_of_the_unpadded_speech(speech, other_speech, campplus,
                                                          tmp_path):
    clean = write_wav(tmp_path / "clean.wav", speech)
    long = write_wav(tmp_path / "long.wav", padded(speech, 20.0, 25.0))
    other = write_wav(tmp_path / "other.wav", padded(other_speech, 25.0, 20.0))
    vectors = {}
    for name, path in (("clean", clean), ("long", long), ("other", other)):
        for flag in ("--no-vad", "--vad"):
            code, out, err = embed(path, "--model", campplus, "--json", flag)
            assert code == 0, err
            vectors[name, flag] = np.array(json.loads(out)["embedding"])
    with_vad = cosine_similarity(vectors["clean", "--no-vad"], vectors["long", "--vad"])
    without = cosine_similarity(vectors["clean", "--no-vad"], vectors["long", "--no-vad"])
    assert with_vad > 0.95
    assert without < with_vad - 0.1
    # silence makes two speakers look alike without VAD, not with it
    apart_vad = cosine_similarity(vectors["long", "--vad"], vectors["other", "--vad"])
    apart_raw = cosine_similarity(vectors["long", "--no-vad"], vectors["other", "--no-vad"])
    assert apart_vad < apart_raw - 0.1


def test_python_api_vad_argument(speech, small_model_dir, tmp_path):
    speaker = WeSpeaker.from_pretrained(small_model_dir)
    x = padded(speech, 4.0, 6.0)
    regions = vad.find_speech(x)
    expected = speaker.embed_features(fbank(vad.cut(x, regions), speaker.config.frontend))
    from_samples = speaker.embed(samples=x, sample_rate=RATE, vad=True)
    assert cosine_similarity(from_samples, expected) > 0.99999
    path = write_wav(tmp_path / "p.wav", x, subtype="FLOAT")
    (result,) = speaker.embed_sources([path], vad=True)
    assert cosine_similarity(result.embedding, expected) > 0.99999
    assert result.speech == pytest.approx(vad.total(regions) / RATE)
    assert result.duration == pytest.approx(len(x) / RATE)
    plain = speaker.embed(samples=x, sample_rate=RATE)
    assert cosine_similarity(plain, expected) < 0.99


def test_a_long_recording_streams_its_speech_through_chunks(speech, other_speech,
                                                            small_model_dir, tmp_path):
    """Over 60 s of speech: the chunked, streamed path (batching.embed_streamed)."""
    speaker = WeSpeaker.from_pretrained(small_model_dir)
    parts = []
    for i in range(6):
        parts += [np.zeros(RATE * 3, np.float32), speech if i % 2 else other_speech]
    x = np.concatenate(parts)
    path = write_wav(tmp_path / "long.wav", x, subtype="FLOAT")
    regions = vad.find_speech(x)
    frames = fbank(vad.cut(x, regions), speaker.config.frontend)
    assert speaker.inference.needs_chunks(len(frames))
    expected = speaker.embed_features(frames)
    (result,) = speaker.embed_sources([path], vad=True)
    assert cosine_similarity(result.embedding, expected) > 0.9999


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_no_speech_exits_3(kind, small_model_dir, tmp_path):
    rng = np.random.default_rng(1)
    x = (np.zeros(RATE * 5, np.float32) if kind == "silence"
         else (0.05 * rng.standard_normal(RATE * 5)).astype(np.float32))
    path = write_wav(tmp_path / f"{kind}.wav", x)
    code, out, err = embed(path, "--model", small_model_dir, "--vad")
    assert code == 3
    assert out == ""
    assert err.strip().splitlines() == [f"audio: error: {path}: no speech found"]


def test_too_little_speech_names_its_duration(speech, small_model_dir, tmp_path):
    regions = vad.find_speech(speech)
    s, e = regions[0]
    word = speech[s:min(e, s + int(0.8 * RATE))]
    path = write_wav(tmp_path / "word.wav", padded(word, 3.0, 3.0))
    kept = vad.total(vad.find_speech(padded(word, 3.0, 3.0))) / RATE
    assert 0 < kept < 2.5  # the word and its padding
    code, out, err = embed(path, "--model", small_model_dir, "--vad", "--min-duration", "2.5")
    assert code == 3 and out == ""
    assert err.strip().splitlines() == [
        f"audio: error: {path}: too short ({kept:.3f} s of speech after voice-activity "
        "detection); at least 2.5 s is needed (--min-duration)"]


def test_windows_report_their_speech(speech, small_model_dir, tmp_path):
    x = padded(speech[: 6 * RATE], 0.0, 6.0)
    path = write_wav(tmp_path / "w.wav", x)
    code, out, err = embed(path, "--model", small_model_dir, "--vad", "--json",
                           "--window", "3")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["start"] for r in records] == [0.0, 3.0, 6.0, 9.0]
    regions = vad.find_speech(x)
    for r in records:
        expected = vad.total(vad.overlap(regions, int(r["start"] * RATE),
                                         int(r["end"] * RATE))) / RATE
        assert r["speech"] == pytest.approx(expected, abs=1e-6)
        assert (r["embedding"] is None) == (r["speech"] < 0.5)
    assert records[0]["embedding"] is not None and records[-1]["embedding"] is None
    # the table marks the window instead of leaving it out
    code, out, err = embed(path, "--model", small_model_dir, "--vad", "--window", "3")
    assert code == 0, err
    assert len(out.splitlines()) == 1 + len(records)
    assert "s speech" in out.splitlines()[-1]


def test_no_vad_is_the_output_of_before(speech, small_model_dir, tmp_path):
    """--no-vad is the default and changes nothing: same bytes in an .npy, no new field."""
    path = write_wav(tmp_path / "p.wav", padded(speech[: 4 * RATE], 2.0, 2.0))
    outputs = []
    for flags in ([], ["--no-vad"]):
        target = tmp_path / f"out{len(outputs)}.npy"
        code, _, err = embed(path, "--model", small_model_dir, "-o", target, *flags)
        assert code == 0, err
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    code, out, err = embed(path, "--model", small_model_dir, "--json", "--no-vad")
    assert code == 0, err
    record = json.loads(out)
    assert "speech" not in record
    assert record["duration"] == pytest.approx(8.0)
    code, out, err = embed(path, "--model", small_model_dir, "--json", "--vad")
    assert code == 0, err
    assert json.loads(out)["duration"] == pytest.approx(8.0)
    assert 0 < json.loads(out)["speech"] <= 5.0  # 4 s and at most 0.5 s padding a side


# ---------------------------------------------------------------- other commands


def test_compare_with_vad_scores_the_speech(speech, small_model_dir, tmp_path):
    a = padded(speech[: 5 * RATE], 6.0, 2.0)
    b = padded(speech[5 * RATE: 10 * RATE], 1.0, 9.0)
    paths = [write_wav(tmp_path / "a.wav", a), write_wav(tmp_path / "b.wav", b)]
    speaker = WeSpeaker.from_pretrained(small_model_dir)
    expected = {flag: cosine_similarity(*[speaker.embed(samples=x, sample_rate=RATE, vad=v)
                                          for x in (a, b)])
                for flag, v in (("--vad", True), ("--no-vad", False))}
    assert abs(expected["--vad"] - expected["--no-vad"]) > 1e-3  # the flag matters here
    for flag, score in expected.items():
        proc = run_audio("compare", *map(str, paths), "--model", str(small_model_dir),
                         "--threshold", "0.5", "--json", flag)
        assert proc.returncode in (0, 1), proc.stderr
        assert json.loads(proc.stdout)["score"] == pytest.approx(score, abs=1e-5)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(RATE * 3, np.float32))
    proc = run_audio("compare", str(paths[0]), str(silent), "--model", str(small_model_dir),
                     "--threshold", "0.5", "--vad")
    assert proc.returncode == 2  # compare's status for any error
    assert proc.stderr.strip().splitlines() == [
        f"audio: error: {silent}: no speech found"]


def test_eval_with_vad_embeds_the_speech(shared_dir, small_model_dir, tmp_path):
    speaker = WeSpeaker.from_pretrained(small_model_dir)
    vectors, labels = [], []
    for who in ("1688", "1998"):
        folder = tmp_path / "data" / who
        folder.mkdir(parents=True)
        for i, f in enumerate(sorted((shared_dir / SPEECH / who).glob("*.flac"))[:2]):
            x, _ = sf.read(str(f), dtype="float32")
            path = write_wav(folder / f"{i}.wav", padded(x, 2.0 + 3 * i, 8.0 - 3 * i))
            vectors.append(speaker.embed(path, vad=True))
            labels.append(who)
    target = [cosine_similarity(vectors[i], vectors[j]) for i in range(4)
              for j in range(i + 1, 4) if labels[i] == labels[j]]
    proc = run_audio("eval", str(tmp_path / "data"), "--model", str(small_model_dir), "--json",
                     "--vad")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["mean_target_score"] == pytest.approx(np.mean(target), abs=1e-5)


def test_python_api_says_no_speech_of_silence_and_noise(small_model_dir):
    from audio_cli.frontend.audio import from_samples
    from engines.errors import InputAudioError

    speaker = WeSpeaker.from_pretrained(small_model_dir)
    noise = (0.05 * np.random.default_rng(2).standard_normal(RATE * 4)).astype(np.float32)
    for x in (np.zeros(RATE * 4, np.float32), noise):
        with pytest.raises(InputAudioError, match="no speech found"):
            speaker.embed(samples=x, sample_rate=RATE, vad=True)
        with pytest.raises(InputAudioError, match="no speech found"):
            speaker.embed_windows(from_samples(x, RATE), 2.0, 2.0, vad=True)


def test_windows_none_of_which_holds_enough_speech_fail_the_file(speech, small_model_dir,
                                                                 tmp_path):
    from audio_cli.frontend.audio import from_samples
    from engines.errors import InputAudioError

    regions = vad.find_speech(speech)
    s, e = max(regions, key=lambda r: r[1] - r[0])
    x = padded(speech[s:e], 2.0, 2.0)
    speaker = WeSpeaker.from_pretrained(small_model_dir)
    minimum = (e - s) / RATE + 1.5  # more than all the speech there is, 0.5 s padding a side
    with pytest.raises(InputAudioError, match="no window holds"):
        speaker.embed_windows(from_samples(x, RATE), minimum + 1, minimum + 1, minimum,
                              vad=True)
