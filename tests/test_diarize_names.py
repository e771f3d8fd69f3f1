"""`audio diarize --db STORE`: speakers enrolled in a store named in a diarization.

The naming rules on vectors whose cosines the test sets itself; the store's errors with a
small random model; and end to end with the real CAM++ weights on a conversation of three
LibriSpeech readers (../shared/data/speech), two of them enrolled from other utterances of
theirs, beside a fourth enrolled reader who does not speak in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import run_audio
from signals import voiced, write_wav
from store_helpers import make_model, make_speakers
from test_diarize import SPEECH, segmentation  # noqa: F401 (segmentation: a fixture)

from audio_cli.diarization.result import Diarization
from audio_cli.diarization.turns import Turn, read_rttm
from audio_cli.store.naming import match_speakers, renamed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.conversations import speech_frames  # noqa: E402


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def at_cosine(c: float) -> np.ndarray:
    """A unit vector at cosine `c` from (1, 0, 0, 0), in the plane of the first two axes."""
    return np.array([c, np.sqrt(1 - c * c), 0.0, 0.0])


# -- the rules, on vectors of known cosines -------------------------------------------------


def test_a_match_takes_the_name_an_unknown_voice_and_an_absent_speaker_do_not():
    enrolled = {"ann": np.stack([unit(1, 0.1, 0, 0), unit(1, -0.1, 0, 0)]),
                "bob": unit(0, 1, 0, 0)[None], "cy": unit(0, 0, 0, 1)[None]}
    clusters = {"SPEAKER_00": unit(1, 0, 0.2, 0), "SPEAKER_01": unit(0.1, 1, 0, 0),
                "SPEAKER_02": unit(0, 0, 1, 0)}
    matches = match_speakers(clusters, enrolled, threshold=0.5)
    assert {label: m.name for label, m in matches.items()} == {"SPEAKER_00": "ann",
                                                               "SPEAKER_01": "bob"}
    # ann's exemplars average to (1, 0, 0, 0): the score is the cosine with that mean
    assert matches["SPEAKER_00"].score == pytest.approx(1 / np.sqrt(1.04))
    assert matches["SPEAKER_01"].score == pytest.approx(1 / np.sqrt(1.01))


def test_a_name_is_given_once_to_the_closest_of_two_voices_that_match_it():
    enrolled = {"ann": unit(1, 0, 0, 0)[None]}
    clusters = {"SPEAKER_00": at_cosine(0.7), "SPEAKER_01": at_cosine(0.9),
                "SPEAKER_02": at_cosine(0.8)}
    matches = match_speakers(clusters, enrolled, threshold=0.5)
    assert list(matches) == ["SPEAKER_01"]
    assert matches["SPEAKER_01"].name == "ann"


def test_every_name_at_most_once_when_every_pair_matches():
    rng = np.random.default_rng(0)
    enrolled = {name: unit(*(1 + 0.1 * rng.standard_normal(4)))[None]
                for name in ("ann", "bob", "cy")}
    clusters = {f"SPEAKER_{i:02d}": unit(*(1 + 0.1 * rng.standard_normal(4))) for i in range(5)}
    matches = match_speakers(clusters, enrolled, threshold=0.5)
    names = [m.name for m in matches.values()]
    assert sorted(names) == ["ann", "bob", "cy"]  # each once; two voices stay anonymous


def test_a_score_at_the_threshold_matches_below_it_does_not():
    enrolled = {"ann": unit(1, 0, 0, 0)[None]}
    cosine = float(at_cosine(0.6) @ unit(1, 0, 0, 0))
    assert [m.name for m in match_speakers({"S": at_cosine(0.6)}, enrolled,
                                           cosine).values()] == ["ann"]
    assert match_speakers({"S": at_cosine(0.6)}, enrolled, cosine + 1e-4) == {}


def test_renamed_keeps_turns_and_never_lets_two_speakers_share_a_label():
    turns = [Turn("talk", 0.0, 1.0, "SPEAKER_00"), Turn("talk", 1.0, 2.0, "SPEAKER_01"),
             Turn("talk", 2.0, 2.2, "SPEAKER_02")]  # SPEAKER_02: too short for a vector
    vectors = {"SPEAKER_00": at_cosine(0.9), "SPEAKER_01": unit(0, 0, 1, 0)}
    # an enrolled speaker called SPEAKER_01 matches the first voice
    enrolled = {"SPEAKER_01": unit(1, 0, 0, 0)[None]}
    result = renamed(Diarization(turns, vectors),
                     match_speakers(vectors, enrolled, threshold=0.5))
    labels = [t.speaker for t in result.turns]
    assert labels[0] == "SPEAKER_01"
    assert len(set(labels)) == 3 and labels[1] not in ("SPEAKER_01", "SPEAKER_02")
    assert [(t.start, t.end) for t in result.turns] == [(t.start, t.end) for t in turns]
    assert result.scores == {"SPEAKER_01": pytest.approx(0.9), labels[1]: None,
                             "SPEAKER_02": None}
    assert set(result.vectors) == {"SPEAKER_01", labels[1]}


# -- the store's errors (a small random model: they come before any recording is read) -------


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("names")
    speakers = make_speakers(root / "audio")
    return {"root": root, "speakers": speakers, "one": make_model(root / "one"),
            "two": make_model(root / "two", seed=3),
            "talk": write_wav(root / "talk.wav", voiced(3.0, f0=140.0, seed=5))}


def one_error(proc, status: int, *words: str) -> None:
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr


def test_a_store_that_does_not_exist_is_an_error_and_is_not_created(small, tmp_path):
    db = tmp_path / "none.db"
    proc = run_audio("diarize", small["talk"], "--model", small["one"], "--db", db)
    one_error(proc, 6, str(db), "no such store")
    assert not db.exists()


def test_a_file_that_is_not_a_store_is_an_error_and_left_alone(small, tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("my notes\n")
    proc = run_audio("diarize", small["talk"], "--model", small["one"], "--db", db)
    one_error(proc, 6, "not an audio store")
    assert db.read_text() == "my notes\n"


def test_a_store_without_speakers_is_an_error(small, tmp_path):
    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", *small["speakers"][0][:2], "--model", small["one"],
                     "--db", db).returncode == 0
    assert run_audio("speakers", "remove", "ann", "--db", db).returncode == 0
    proc = run_audio("diarize", small["talk"], "--model", small["one"], "--db", db)
    one_error(proc, 6, "no speakers enrolled")


def test_speakers_of_another_model_are_never_compared(small, tmp_path):
    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", *small["speakers"][0][:2], "--model", small["one"],
                     "--db", db).returncode == 0
    proc = run_audio("diarize", small["talk"], "--model", small["two"], "--db", db)
    one_error(proc, 4, str(small["two"]))


def test_speakers_enrolled_only_with_another_model_are_left_out_with_a_note(small, tmp_path):
    db = tmp_path / "s.db"
    for name, model, files in (("ann", "one", small["speakers"][0][:2]),
                               ("bob", "two", small["speakers"][1][:2])):
        assert run_audio("enroll", name, *files, "--model", small[model],
                         "--db", db).returncode == 0
    proc = run_audio("diarize", small["talk"], "--model", small["one"], "--segmentation",
                     "none", "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "bob has no exemplar" in proc.stderr and "ann" not in proc.stderr
    assert all(json.loads(line)["speaker"] != "bob" for line in proc.stdout.splitlines())


def test_the_stores_calibrated_threshold_is_the_one_used(small, tmp_path):
    from audio_cli.pipeline.handle import open_model
    from audio_cli.store.db import Store
    from audio_cli.store.naming import Namer
    from audio_cli.store.settings import Made

    db = tmp_path / "s.db"
    for name, files in zip(("ann", "bob", "cy"), small["speakers"], strict=False):
        assert run_audio("enroll", name, *files, "--model", small["one"],
                         "--db", db).returncode == 0
    proc = run_audio("calibrate", "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(proc.stdout)["threshold"]
    with Store(db, readonly=True) as store:
        namer = Namer(store, open_model(str(small["one"])), Made(vad=False))
    assert (namer.threshold.value, namer.threshold.origin) == (stored, "store")
    assert sorted(namer.enrolled) == ["ann", "bob", "cy"]


def test_exemplars_enrolled_without_vad_draw_one_warning(small, tmp_path):
    from audio_cli.pipeline.handle import open_model
    from audio_cli.store.db import Store
    from audio_cli.store.naming import Namer
    from audio_cli.store.settings import Made

    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", *small["speakers"][0][:2], "--model", small["one"],
                     "--db", db).returncode == 0
    with Store(db, readonly=True) as store, pytest.warns(UserWarning, match="without --vad"):
        Namer(store, open_model(str(small["one"])), Made(vad=True))


# -- end to end: real speech, the real CAM++ weights ---------------------------------------

# A conversation of three readers taking turns (1688 M, 3080 F, 2033 M); 1688 and 3080 are
# enrolled from two other utterances each, 2414 (M, like the unknown 2033) from two of his
# own; 2033 is not enrolled.
TALK = [("1688", "1688-142285-0006"), ("3080", "3080-5032-0001"), ("2033", "2033-164914-0001"),
        ("3080", "3080-5032-0005"), ("1688", "1688-142285-0007"), ("2033", "2033-164914-0002"),
        ("1688", "1688-142285-0003"), ("2033", "2033-164914-0003"), ("3080", "3080-5032-0004")]
ENROLLED = {"ada": ("1688", ("1688-142285-0000", "1688-142285-0001")),
            "bea": ("3080", ("3080-5032-0002", "3080-5032-0008")),
            "dan": ("2414", ("2414-128291-0001", "2414-128291-0004"))}
NAME_OF = {"1688": "ada", "3080": "bea", "2033": None}
PAUSE = 0.8
NAMED_SHARE = 0.85  # of each enrolled reader's speech that must carry the reader's name
SPILL = 0.05  # share of the unknown reader's speech an enrolled name may touch at boundaries


@pytest.fixture(scope="module")
def meeting(shared_dir, tmp_path_factory):
    """(path, {reader: [(start, end)] of speech}) of the three-reader conversation; speech
    is where an energy detector finds it in each clean utterance (bench/conversations.py,
    the reference of the simulated conversations), so pauses inside an utterance are not
    counted as a speaker's speech."""
    folder = shared_dir / SPEECH
    pieces, speech, at = [], {}, 0.0
    for reader, name in TALK:
        samples, rate = sf.read(folder / reader / f"{name}.flac", dtype="float32")
        pieces += [samples, np.zeros(int(PAUSE * rate), np.float32)]
        speech.setdefault(reader, []).extend((at + a / rate, at + b / rate)
                                             for a, b in speech_frames(samples))
        at += len(samples) / rate + PAUSE
    path = tmp_path_factory.mktemp("meeting") / "meeting.wav"
    write_wav(path, np.concatenate(pieces))
    return path, speech


@pytest.fixture(scope="module")
def store(shared_dir, campplus_dir, tmp_path_factory) -> Path:
    """A store with ada, bea and dan enrolled by `audio enroll --vad` (diarization embeds
    speech only: exemplars made alike draw no warning)."""
    db = tmp_path_factory.mktemp("names-store") / "people.db"
    folder = shared_dir / SPEECH
    for name, (reader, files) in ENROLLED.items():
        proc = run_audio("enroll", name, *(folder / reader / f"{f}.flac" for f in files),
                         "--model", campplus_dir, "--db", db, "--vad")
        assert proc.returncode == 0, proc.stderr
    return db


def seconds(turns: list[dict], regions: list[tuple[float, float]]) -> dict[str, float]:
    """Seconds each label speaks inside the regions."""
    time: dict[str, float] = {}
    for t in turns:
        for start, end in regions:
            inside = min(end, t["end"]) - max(start, t["start"])
            if inside > 0:
                time[t["speaker"]] = time.get(t["speaker"], 0.0) + inside
    return time


def check_named(turns: list[dict], speech: dict) -> dict[str, float]:
    """The done-when of named speakers; returns the named share of each enrolled reader."""
    labels = {t["speaker"] for t in turns}
    assert "dan" not in labels  # enrolled, absent: never appears
    assert {"ada", "bea"} <= labels
    for t in turns:  # named turns carry their match's score, the others null
        if t["speaker"] in ENROLLED:
            assert 0.0 < t["score"] <= 1.0
        else:
            assert t["score"] is None and t["speaker"].startswith("SPEAKER_")
    shares = {}
    for reader, name in NAME_OF.items():
        total = sum(end - start for start, end in speech[reader])
        time = seconds(turns, speech[reader])
        if name is None:  # the unknown reader: no enrolled name but for boundary spill
            assert sum(time.get(n, 0.0) for n in ENROLLED) <= SPILL * total, time
        else:
            shares[reader] = time.get(name, 0.0) / total
            assert shares[reader] >= NAMED_SHARE, (reader, time, total)
    return shares


@pytest.mark.slow
def test_enrolled_readers_are_named_with_segmentation(meeting, store, campplus_dir, request,
                                                      tmp_path):
    path, speech = meeting
    model = request.getfixturevalue("segmentation")  # test_diarize's fixture
    rttm = tmp_path / "named.rttm"
    proc = run_audio("diarize", path, "--model", campplus_dir, "--segmentation", model,
                     "--db", store, "--json", "--output", rttm)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    check_named(turns, speech)
    written = read_rttm(rttm)["meeting"]  # the names in RTTM, turn by turn
    assert sorted((round(t.start, 3), t.speaker) for t in written) == sorted(
        (round(t["start"], 3), t["speaker"]) for t in turns)


@pytest.mark.slow
def test_enrolled_readers_are_named_without_segmentation_and_the_stores_model(
        meeting, store, tmp_path):
    """The VAD-only path; no --model: the store's one model is used, as for identify."""
    pa = pytest.importorskip("pyarrow.parquet")
    path, speech = meeting
    table = tmp_path / "named.parquet"
    proc = run_audio("diarize", path, "--segmentation", "none", "--db", store, "--json",
                     "--output", table)
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    check_named(turns, speech)
    rows = pa.read_table(table).to_pylist()
    assert [(r["speaker"], r["score"]) for r in rows] == [(t["speaker"], t["score"])
                                                          for t in turns]


def test_parquet_has_the_score_column_with_db_even_when_every_input_failed(small, tmp_path):
    """--db --output X.parquet: the `score` column is there whatever the inputs gave, so
    tables written by several runs have one schema."""
    pq = pytest.importorskip("pyarrow.parquet")
    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", *small["speakers"][0][:2], "--model", small["one"],
                     "--db", db).returncode == 0
    table = tmp_path / "turns.parquet"
    proc = run_audio("diarize", tmp_path / "missing.wav", "--model", small["one"], "--db", db,
                     "--segmentation", "none", "--output", table)
    assert proc.returncode == 3, proc.stderr
    written = pq.read_table(table)
    assert "score" in written.column_names
    assert written.column("error").to_pylist()[0].endswith("no such file")
