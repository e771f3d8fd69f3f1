"""Diarization scoring (audio_cli/diarization/scoring.py, `audio eval-diarization`).

Small cases whose DER parts and JER are worked out by hand below, then agreement with
pyannote.metrics (DiarizationErrorRate without collar and with collar=0.5, JaccardErrorRate)
on random RTTM files and on the AMI reference against a perturbed copy of it. pyannote.metrics
is in the `test` extra; those tests skip where it is not installed.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
from cli_run import run_audio

from audio_cli.diarization.assignment import min_cost_assignment
from audio_cli.diarization.scoring import (
    FAIR,
    FULL,
    jaccard_errors,
    mean_der,
    merged,
    overlap_pairs,
    score_files,
    score_recording,
    scored_region,
    speaker_times,
    total,
)
from audio_cli.diarization.turns import Turn, read_rttm, read_uem, rttm_line
from engines.errors import UsageError

AMI = ("data", "diarization", "ami-debug-train")
RELATIVE = 1e-6  # agreement with pyannote.metrics, relative to the reference speech


def turns(uri: str = "f", **speakers: list[tuple[float, float]]) -> list[Turn]:
    """Turns from speaker=[(start, end), ...]."""
    return sorted(Turn(uri, s, e, name) for name, spans in speakers.items() for s, e in spans)


# ---------------------------------------------------------------- the assignment


def test_assignment_is_the_cheapest_of_all_one_to_one_pairings():
    rng = np.random.default_rng(5)
    for trial in range(300):
        rows, columns = (int(n) for n in rng.integers(0, 6, size=2))
        cost = rng.normal(size=(rows, columns))
        if trial % 3 == 0:
            cost = np.round(cost)  # ties
        pairs = min_cost_assignment(cost)
        assert len(pairs) == min(rows, columns)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        if rows <= columns:  # every injection of rows into columns
            best = min((sum(cost[r, c] for r, c in enumerate(p))
                        for p in itertools.permutations(range(columns), rows)), default=0.0)
        else:
            best = min(sum(cost[r, c] for c, r in enumerate(p))
                       for p in itertools.permutations(range(rows), columns))
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best, abs=1e-12)


def test_assignment_refuses_a_non_finite_cost():
    with pytest.raises(ValueError, match="non-finite"):
        min_cost_assignment(np.array([[0.0, math.inf]]))


# ---------------------------------------------------------------- hand-computed cases


def test_nothing_found_is_all_missed():
    score = score_recording(turns(A=[(0, 10)]), [])
    assert (score.speech, score.missed, score.false_alarm, score.confusion) == (10, 10, 0, 0)
    assert score.der == 1.0 and score.jer == 1.0


def test_partly_missed():
    # A speaks 0-10; X found only 0-6: 4 s missed of 10; A and X share 6 s of a 10 s union
    score = score_recording(turns(A=[(0, 10)]), turns(X=[(0, 6)]))
    assert score.missed == pytest.approx(4) and score.der == pytest.approx(0.4)
    assert score.jer == pytest.approx(1 - 6 / 10)


def test_false_alarm_outside_and_inside_speech():
    # X matches A exactly; Y adds 10-12 (after all reference speech) and 2-5 (a second
    # speaker over A): 2 + 3 s false alarm over 10 s of speech. Y pairs with no reference
    # speaker, so JER does not count it.
    score = score_recording(turns(A=[(0, 10)]), turns(X=[(0, 10)], Y=[(2, 5), (10, 12)]))
    assert (score.missed, score.false_alarm, score.confusion) == (0, 5, 0)
    assert score.der == pytest.approx(0.5) and score.jer == 0


def test_swapped_labels_are_undone_by_the_mapping():
    reference = turns(A=[(0, 4), (6, 8)], B=[(4, 6), (8, 10)])
    swapped = [Turn(t.uri, t.start, t.end, {"A": "B", "B": "A"}[t.speaker]) for t in reference]
    score = score_recording(reference, swapped)
    assert (score.der, score.jer) == (0, 0)
    assert (score.ref_speakers, score.hyp_speakers) == (2, 2)


def test_confusion_in_overlapped_speech():
    # A 0-6 and B 4-10 overlap at 4-6. X = A exactly, Y = 6-10, Z = 4-6. Shared time:
    # A-X 6, A-Z 2, B-X 2, B-Z 2, B-Y 4; the best mapping is A-X, B-Y (10 s). At 4-6 two
    # speak on each side, A is right and B is called Z: 2 s confusion of 12 s speech.
    score = score_recording(turns(A=[(0, 6)], B=[(4, 10)]),
                            turns(X=[(0, 6)], Y=[(6, 10)], Z=[(4, 6)]))
    assert score.speech == 12
    assert (score.missed, score.false_alarm, score.confusion) == (0, 0, 2)
    assert score.der == pytest.approx(2 / 12)
    # JER: A-X 0; B-Y: 4 s shared of a 6 s union -> 1/3; mean over A and B
    assert score.jer == pytest.approx((0 + 1 / 3) / 2)


def test_collar_removes_boundary_errors():
    # A 0-10, X 0.2-9.9: 0.3 s missed near the boundaries. Fair: 0-0.25 and 9.75-10 are
    # not scored (0.25 s each side of each boundary), leaving 9.5 s and no error.
    reference, hypothesis = turns(A=[(0, 10)]), turns(X=[(0.2, 9.9)])
    full = score_recording(reference, hypothesis, convention=FULL)
    fair = score_recording(reference, hypothesis, convention=FAIR)
    assert full.missed == pytest.approx(0.3) and full.der == pytest.approx(0.03)
    assert fair.speech == pytest.approx(9.5) and fair.der == 0
    # a speaker change 0.2 s late: 0.2 s confusion without collar, none with it
    reference = turns(A=[(0, 5)], B=[(5, 10)])
    hypothesis = turns(X=[(0, 5.2)], Y=[(5.2, 10)])
    full = score_recording(reference, hypothesis, convention=FULL)
    fair = score_recording(reference, hypothesis, convention=FAIR)
    assert full.confusion == pytest.approx(0.2) and full.der == pytest.approx(0.02)
    assert fair.speech == pytest.approx(9) and fair.der == 0
    assert scored_region(reference, hypothesis, None, 0.25) == [(0.25, 4.75), (5.25, 9.75)]


def test_jer_pairs_speakers_by_least_error_not_most_overlap():
    # A 2-12 (10 s), B 0-2 (2 s); X 0-5. Most shared time: A-X (3 s, DER's mapping).
    # Least error: B-X (2 s shared of a 5 s union: 0.6) rather than A-X (3 of 12: 0.75).
    reference, hypothesis = turns(A=[(2, 12)], B=[(0, 2)]), turns(X=[(0, 5)])
    score = score_recording(reference, hypothesis)
    assert score.jer == pytest.approx((1 + 0.6) / 2)  # A unpaired: 1
    times = speaker_times(reference, hypothesis, scored_region(reference, hypothesis, None, 0))
    assert jaccard_errors(times, overlap_pairs(times)).mean() == pytest.approx((0.75 + 1) / 2)
    # DER: 12 s speech; 5-12 missed (7 s); 0-5 one speaks on each side, A-X right for 3 s
    assert (score.missed, score.false_alarm, score.confusion) == (7, 0, 2)


def test_uem_limits_the_scored_region():
    reference, hypothesis = turns(A=[(0, 10)]), turns(X=[(0, 10)], Y=[(20, 30)])
    assert score_recording(reference, hypothesis).false_alarm == 10  # scored up to 30 s
    assert score_recording(reference, hypothesis, [(0, 15)]).der == 0
    # regions cut speech too: 5 s of A in 0-5, 2 s of it in 8-10
    limited = score_recording(reference, hypothesis, [(0, 5), (8, 12)])
    assert limited.speech == 7 and limited.der == 0


def test_a_speakers_own_overlapping_turns_count_once():
    # (pyannote.metrics counts A twice at 4-6: 12 s of speech, 2 s missed; X twice: 2 s
    # false alarm)
    score = score_recording(turns(A=[(0, 6), (4, 10)]), turns(X=[(0, 10)]))
    assert score.speech == 10 and score.der == 0
    score = score_recording(turns(A=[(0, 10)]), turns(X=[(0, 6), (4, 10)]))
    assert score.false_alarm == 0 and score.der == 0


def test_no_reference_speech_in_the_scored_region():
    reference = turns(A=[(0, 10)])
    assert score_recording(reference, [], [(20, 30)]).der == 0
    found = score_recording(reference, turns(X=[(22, 23)]), [(20, 30)])
    assert (found.speech, found.false_alarm, found.der, found.jer) == (0, 1, 1.0, 1.0)


def test_totals_add_times_and_missing_recordings_are_missed():
    reference = {"one": turns("one", A=[(0, 10)]), "two": turns("two", B=[(0, 2)]),
                 "three": turns("three", C=[(0, 3)])}
    hypothesis = {"one": turns("one", X=[(0, 6)]), "two": turns("two", Y=[(0, 2)]),
                  "other": turns("other", Z=[(0, 1)])}
    with pytest.warns(UserWarning) as caught:
        files = score_files(reference, hypothesis)
    said = [str(w.message) for w in caught]
    assert said == ["other is in the hypothesis but not in the reference: ignored",
                    "three is in the reference but not in the hypothesis: scored as all missed"]
    assert [f.uri for f in files] == ["one", "three", "two"]
    summed = total(files, "full")
    # 4 s missed in one, 3 s in three, none in two; 15 s of speech
    assert (summed.speech, summed.missed, summed.files) == (15, 7, 3)
    assert summed.der == pytest.approx(7 / 15)
    assert mean_der(files, "full") == pytest.approx((0.4 + 1.0 + 0.0) / 3)
    # JER over all reference speakers: A 0.4, C 1 (unpaired), B 0
    assert summed.jer == pytest.approx((0.4 + 1 + 0) / 3)


def test_a_uem_without_a_reference_recording_is_an_error():
    with pytest.warns(UserWarning, match="not in the hypothesis"), \
            pytest.raises(UsageError, match="the UEM has no region for b"):
        score_files({"a": turns("a", A=[(0, 1)]), "b": turns("b", A=[(0, 1)])},
                    {}, {"a": [(0, 5)]})


# ---------------------------------------------------------------- against pyannote.metrics


def _pyannote():
    return pytest.importorskip(
        "pyannote.metrics.diarization",
        reason="pyannote.metrics is not installed (it is in the `test` extra)")


def _annotation(found: list[Turn], uri: str):
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for track, turn in enumerate(found):
        annotation[Segment(turn.start, turn.end), track] = turn.speaker
    return annotation


def _compare(reference: dict, hypothesis: dict, uem: dict | None) -> dict:
    """Every file and the totals against pyannote.metrics; the largest differences found."""
    metrics = _pyannote()
    from pyannote.core import Segment, Timeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ours: missing files; theirs: uem approximated
        files = score_files(reference, hypothesis, uem)
        worst = {"der": 0.0, "jer": 0.0}
        for convention, collar in ((FULL, 0.0), (FAIR, 0.5)):
            der = metrics.DiarizationErrorRate(collar=collar)
            jer = metrics.JaccardErrorRate(collar=collar)
            for f in files:
                ref = _annotation(reference[f.uri], f.uri)
                hyp = _annotation(hypothesis.get(f.uri, []), f.uri)
                regions = None if uem is None else Timeline(
                    [Segment(s, e) for s, e in uem[f.uri]], uri=f.uri)
                theirs = der(ref, hyp, uem=regions, detailed=True)
                jer(ref, hyp, uem=regions)
                ours = f.scores[convention.name]
                scale = max(theirs["total"], 1.0)
                for mine, their in ((ours.speech, theirs["total"]),
                                    (ours.missed, theirs["missed detection"]),
                                    (ours.false_alarm, theirs["false alarm"]),
                                    (ours.confusion, theirs["confusion"])):
                    assert mine == pytest.approx(their, rel=RELATIVE, abs=RELATIVE * scale)
                    worst["der"] = max(worst["der"], abs(mine - their) / scale)
                # JER: pyannote pairs speakers by DER's mapping; ours by the least error
                region = scored_region(reference[f.uri], hypothesis.get(f.uri, []),
                                       None if uem is None else uem[f.uri], convention.collar)
                times = speaker_times(reference[f.uri], hypothesis.get(f.uri, []), region)
                if times.ref_speakers:
                    their_jer = jer.results_[-1][1]["jaccard error rate"]
                    same_pairing = jaccard_errors(times, overlap_pairs(times)).mean()
                    assert same_pairing == pytest.approx(their_jer, rel=RELATIVE, abs=1e-9)
                    worst["jer"] = max(worst["jer"], abs(same_pairing - their_jer))
                    assert ours.jer <= their_jer + 1e-9
            summed = total(files, convention.name)
            assert summed.der == pytest.approx(abs(der), rel=RELATIVE)
            assert summed.speech == pytest.approx(der[:]["total"], rel=RELATIVE)
    return worst


def _random_rttm(rng, uris: list[str], prefix: str) -> list[Turn]:
    """Turns of 1-5 speakers per recording over a minute, overlapping at random."""
    found = []
    for uri in uris:
        for speaker in range(int(rng.integers(1, 6))):
            t = float(rng.uniform(0, 3))
            while t < 60:
                length = float(rng.uniform(0.1, 6))
                if rng.random() < 0.5:
                    found.append(Turn(uri, round(t, 3), round(min(t + length, 60), 3),
                                      f"{prefix}{speaker}"))
                t += length + float(rng.uniform(0, 5))
    return found


def _write(path, found: list[Turn]):
    path.write_text("".join(rttm_line(t) for t in found))
    return path


def test_agrees_with_pyannote_metrics_on_random_files(tmp_path):
    _pyannote()
    rng = np.random.default_rng(24)
    uris = [f"rec{i}" for i in range(40)]
    reference = read_rttm(_write(tmp_path / "ref.rttm", _random_rttm(rng, uris, "spk")))
    hypothesis = read_rttm(_write(tmp_path / "hyp.rttm", _random_rttm(rng, uris[:-3], "sys")))
    assert set(reference) == set(uris)
    worst = _compare(reference, hypothesis, None)
    uem = {uri: [(float(rng.uniform(0, 10)), float(rng.uniform(20, 45))),
                 (float(rng.uniform(46, 50)), 60.0)] for uri in uris}
    worst_uem = _compare(reference, hypothesis, uem)
    assert max(*worst.values(), *worst_uem.values()) < RELATIVE


def perturbed(reference: dict[str, list[Turn]], seed: int = 0) -> dict[str, list[Turn]]:
    """A plausible system output: boundaries moved by up to 0.3 s, labels renamed, some turns
    given to another speaker or dropped, and a few false alarms added."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Turn]] = {}
    for uri, found in reference.items():
        speakers = sorted({t.speaker for t in found})
        names = {s: f"sys{i}" for i, s in enumerate(rng.permutation(speakers))}
        moved = []
        for turn in found:
            if rng.random() < 0.1:
                continue  # dropped: missed speech
            start = max(0.0, turn.start + float(rng.uniform(-0.3, 0.3)))
            end = max(start + 0.05, turn.end + float(rng.uniform(-0.3, 0.3)))
            speaker = names[turn.speaker]
            if rng.random() < 0.15:
                speaker = f"sys{int(rng.integers(0, len(speakers) + 1))}"  # confusion
            moved.append(Turn(uri, round(start, 3), round(end, 3), speaker))
        for _ in range(2):
            start = float(rng.uniform(0, 29))
            moved.append(Turn(uri, round(start, 3), round(start + float(rng.uniform(0.2, 1.5)),
                                                          3), "sys9"))
        out[uri] = _joined(moved)
    return out


def _joined(found: list[Turn]) -> list[Turn]:
    """Each speaker's overlapping turns made one: pyannote.metrics would count a speaker
    twice where its own turns overlap; this project counts it once."""
    out = []
    for speaker in sorted({t.speaker for t in found}):
        spans = merged([(t.start, t.end) for t in found if t.speaker == speaker])
        out += [Turn(found[0].uri, s, e, speaker) for s, e in spans]
    return sorted(out)


@pytest.mark.shared
def test_agrees_with_pyannote_metrics_on_ami(shared_dir):
    _pyannote()
    folder = shared_dir.joinpath(*AMI)
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    reference = read_rttm(folder / "reference.rttm")
    uem = read_uem(folder / "reference.uem")
    hypothesis = perturbed(reference)
    worst = _compare(reference, hypothesis, uem)
    assert max(worst.values()) < RELATIVE
    files = score_files(reference, hypothesis, uem)
    full, fair = total(files, "full"), total(files, "fair")
    assert 0 < fair.der < full.der < 1  # the collar forgives the moved boundaries


# ---------------------------------------------------------------- the command


def _hand_files(tmp_path):
    """The confusion case above as recording `c`, the partly missed one as `m`."""
    reference = turns("c", A=[(0, 6)], B=[(4, 10)]) + turns("m", A=[(0, 10)])
    hypothesis = turns("c", X=[(0, 6)], Y=[(6, 10)], Z=[(4, 6)]) + turns("m", X=[(0, 6)])
    return _write(tmp_path / "ref.rttm", reference), _write(tmp_path / "hyp.rttm", hypothesis)


def test_command_json_lines(tmp_path):
    ref, hyp = _hand_files(tmp_path)
    result = run_audio("eval-diarization", ref, hyp, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == ["c", "m", None]
    c, m, summed = records
    assert c["full"]["confusion"] == pytest.approx(2) and c["full"]["der"] == pytest.approx(2 / 12)
    assert m["full"]["missed_rate"] == pytest.approx(0.4)
    assert (c["full"]["ref_speakers"], c["full"]["hyp_speakers"]) == (2, 3)
    assert summed["total"] and summed["files"] == 2
    # 22 s of speech; 2 s confusion + 4 s missed
    assert summed["full"]["speech"] == pytest.approx(22)
    assert summed["full"]["der"] == pytest.approx(6 / 22)
    assert summed["full"]["mean_der"] == pytest.approx((2 / 12 + 0.4) / 2)
    assert summed["full"]["jer"] == pytest.approx((0 + 1 / 3 + 0.4) / 3)
    assert (summed["full"]["collar"], summed["fair"]["collar"]) == (0.0, 0.25)
    # fair, c: scored 0.25-3.75, 4.25-5.75, 6.25-9.75; B has 1.5 + 3.5 s, A 3.5 + 1.5 s;
    # the 1.5 s of overlap is where Z stands for B
    assert c["fair"]["speech"] == pytest.approx(10)
    assert c["fair"]["confusion"] == pytest.approx(1.5)


def test_command_table(tmp_path):
    ref, hyp = _hand_files(tmp_path)
    result = run_audio("eval-diarization", ref, hyp)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("full:") and lines[1].split()[:3] == ["file", "speech", "s"]
    assert lines[2].split() == ["c", "12.00", "0.00", "0.00", "16.67", "16.67", "16.67", "2/3"]
    assert lines[3].split() == ["m", "10.00", "40.00", "0.00", "0.00", "40.00", "40.00", "1/1"]
    assert lines[4].split()[:6] == ["total", "22.00", "18.18", "0.00", "9.09", "27.27"]
    assert lines[5] == "mean of per-file DER: 28.33 %"
    assert any(line.startswith("fair:") for line in lines)


def test_command_warns_about_unmatched_recordings(tmp_path):
    ref = _write(tmp_path / "ref.rttm", turns("a", A=[(0, 1)]))
    hyp = _write(tmp_path / "hyp.rttm", turns("b", X=[(0, 1)]))
    result = run_audio("eval-diarization", ref, hyp)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "audio: warning: b is in the hypothesis but not in the reference: ignored",
        "audio: warning: a is in the reference but not in the hypothesis: scored as all missed"]


@pytest.mark.shared
def test_command_scores_the_ami_reference_against_itself_as_perfect(shared_dir):
    folder = shared_dir.joinpath(*AMI)
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    reference = folder / "reference.rttm"
    result = run_audio("eval-diarization", reference, reference, "--uem",
                       folder / "reference.uem", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [f"trn{i:02d}" for i in range(10)] + [None]
    for record in records:
        for convention in ("full", "fair"):
            scores = record[convention]
            assert scores["der"] == scores["jer"] == 0
            assert scores["ref_speakers"] == scores["hyp_speakers"] > 0
    assert records[-1]["fair"]["speech"] < records[-1]["full"]["speech"]


@pytest.mark.parametrize("case", ["missing", "malformed", "bad uem", "uem lacks", "empty"])
def test_command_bad_input_is_one_line_and_status_2(tmp_path, case):
    ref, hyp = _hand_files(tmp_path)
    extra = []
    if case == "missing":
        hyp = tmp_path / "nowhere.rttm"
    elif case == "malformed":
        hyp.write_text("SPEAKER c 1 0.0 one <NA> <NA> X <NA> <NA>\n")
    elif case == "bad uem":
        (tmp_path / "a.uem").write_text("c 1 0 30\nm 1 9 3\n")
        extra = ["--uem", tmp_path / "a.uem"]
    elif case == "uem lacks":
        (tmp_path / "a.uem").write_text("c 1 0 30\n")
        extra = ["--uem", tmp_path / "a.uem"]
    else:
        ref.write_text(";; nothing\n")
    result = run_audio("eval-diarization", ref, hyp, *extra)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("audio: error: ")
    expected = {"missing": "nowhere.rttm: no such file", "malformed": "hyp.rttm:1: duration",
                "bad uem": "a.uem:2: the region ends before it starts",
                "uem lacks": "the UEM has no region for m", "empty": "no SPEAKER lines"}[case]
    assert expected in result.stderr
