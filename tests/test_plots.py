"""Pictures (audio_cli/plots): what each one draws is checked against the data it was drawn
from, computed here independently (rates of trial scores, turns, store vectors), and the
commands that write them (eval --plot, speakers map, diarize --plot) end to end."""

from __future__ import annotations

import json
import sys
from statistics import NormalDist

import numpy as np
import pytest
from cli_run import run_audio
from signals import voiced, write_wav
from store_helpers import make_model, make_speakers

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")

from audio_cli.diarization.turns import Turn  # noqa: E402
from audio_cli.evaluation.metrics import Trials  # noqa: E402
from audio_cli.plots import figure as figure_module  # noqa: E402
from audio_cli.plots import projection, timeline  # noqa: E402
from audio_cli.plots.det import det_figure, det_run  # noqa: E402

INSTALL = "pip install 'audio-speaker[plot]'"


def quantile(p: float) -> float:
    return NormalDist().inv_cdf(p)


def rates(target: np.ndarray, nontarget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P_miss, P_fa) with acceptance at score >= t, for t at every distinct score, then +inf."""
    thresholds = sorted(set(target.tolist()) | set(nontarget.tolist())) + [float("inf")]
    miss = np.array([np.mean(target < t) for t in thresholds])
    fa = np.array([np.mean(nontarget >= t) for t in thresholds])
    return miss, fa


def artist(figure, gid: str, kind: str = "lines") -> list:
    found = [a for axes in figure.axes for a in getattr(axes, kind) if a.get_gid() == gid]
    assert found, f"nothing drawn with gid {gid}"
    return found


@pytest.fixture
def drawn(monkeypatch):
    """Figures the commands write, kept for inspection (and still written to their file)."""
    figures = []
    real = figure_module.save

    def keep(figure, path, force=False):
        figures.append(figure)
        real(figure, path, force)

    monkeypatch.setattr(figure_module, "save", keep)
    monkeypatch.setattr(timeline, "save", keep)
    return figures


# ------------------------------------------------------------------ DET curve


def test_det_curve_points_are_the_trials_rates_and_markers_sit_at_eer_and_min_dcf():
    rng = np.random.default_rng(4)
    # rounded to two decimals: many tied scores, which must move together
    target = np.round(rng.normal(0.6, 0.15, 300), 2)
    nontarget = np.round(rng.normal(0.1, 0.15, 2000), 2)
    run = det_run("test run", Trials(target, nontarget))
    miss, fa = rates(target, nontarget)
    assert np.allclose(run.p_miss, miss) and np.allclose(run.p_fa, fa)
    figure = det_figure([run])
    (curve,) = artist(figure, "det")
    x, y = curve.get_xdata(), curve.get_ydata()
    assert len(x) == len(miss)
    inside = (fa > 0.01) & (fa < 0.4) & (miss > 0.01) & (miss < 0.4)
    assert inside.sum() > 5
    assert np.allclose(x[inside], [quantile(p) for p in fa[inside]])
    assert np.allclose(y[inside], [quantile(p) for p in miss[inside]])
    # the EER marker: where P_miss = P_fa, both read off the curve by interpolating the ROC
    (eer,) = artist(figure, "eer")
    crossing = np.argmax(miss >= fa)
    a, b = crossing - 1, crossing
    alpha = (fa[a] - miss[a]) / ((miss[b] - miss[a]) - (fa[b] - fa[a]))
    expected_eer = miss[a] + alpha * (miss[b] - miss[a])
    assert eer.get_xdata()[0] == pytest.approx(quantile(expected_eer))
    assert eer.get_ydata()[0] == pytest.approx(quantile(expected_eer))
    # minDCF (p_target 0.01): the operating point of least cost
    cost = (0.01 * miss + 0.99 * fa) / 0.01
    best = int(np.argmin(cost))
    (dcf,) = artist(figure, "min_dcf")
    assert dcf.get_xdata()[0] == pytest.approx(quantile(fa[best]))
    assert dcf.get_ydata()[0] == pytest.approx(quantile(miss[best]))
    # the histograms hold every trial, and the threshold line sits at the EER's threshold
    counts = [p.get_height() for p in figure.axes[1].patches]
    widths = [p.get_width() for p in figure.axes[1].patches]
    assert sum(c * w for c, w in zip(counts, widths, strict=True)) == pytest.approx(2.0)
    (line,) = artist(figure, "eer_threshold")
    assert line.get_xdata()[0] == pytest.approx(run.metrics.eer_threshold)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three synthetic speakers of three files each (voiced signals of distinct pitch)."""
    root = tmp_path_factory.mktemp("plot-corpus")
    for s, f0 in enumerate((110.0, 160.0, 230.0)):
        for i in range(3):
            folder = root / f"speaker{s}"
            folder.mkdir(exist_ok=True)
            write_wav(folder / f"{i}.wav", voiced(0.9, f0=f0 * (1 + 0.02 * i), seed=10 * s + i))
    return root


def test_eval_plot_draws_the_runs_trial_scores_and_compares_an_earlier_run(
        corpus, small_model_dir, tmp_path, drawn):
    common = [str(corpus), "--model", str(small_model_dir), "--engine", "onnx", "--threads", "1"]
    first = run_audio("eval", *common, "--json", "--trial-scores")
    assert first.returncode == 0, first.stderr
    earlier = tmp_path / "earlier.json"
    earlier.write_text(first.stdout)
    record = json.loads(first.stdout)
    assert record["target_trials"] == len(record["target_scores"]) == 9
    assert record["nontarget_trials"] == len(record["nontarget_scores"]) == 27
    picture = tmp_path / "det.svg"
    second = run_audio("eval", *common, "--json", "--precision", "int8", "--plot", str(picture),
                       "--compare", str(earlier))
    assert second.returncode == 0, second.stderr
    assert picture.read_text().lstrip().startswith("<?xml")
    assert "target_scores" not in json.loads(second.stdout)  # only with --trial-scores
    (figure,) = drawn
    curves = artist(figure, "det")
    assert [c.get_label().split(":")[0] for c in curves] == [
        f"{small_model_dir.name} int8", f"{small_model_dir.name} float32"]
    miss, fa = rates(np.array(record["target_scores"]), np.array(record["nontarget_scores"]))
    assert len(curves[1].get_xdata()) == len(miss)
    # the earlier run's EER marker at its reported EER (a rate under the axes' lowest, half
    # of one error in 27 non-target trials here, is drawn at that edge)
    (_, eer_earlier) = artist(figure, "eer")
    shown = min(max(record["eer"], 0.5 / 27), 0.6)
    assert eer_earlier.get_ydata()[0] == pytest.approx(quantile(shown))
    again = run_audio("eval", *common, "--plot", str(picture))
    assert again.returncode == 2 and "exists" in again.stderr


def test_eval_plot_refuses_bad_requests_before_embedding(corpus, tmp_path):
    no_scores = tmp_path / "plain.json"
    no_scores.write_text(json.dumps({"eer": 0.1, "model": "x"}) + "\n")
    cases = [
        (["--plot", str(tmp_path / "x.jpg")], "unknown format"),
        (["--plot", str(tmp_path / "missing" / "x.png")], "does not exist"),
        (["--compare", str(no_scores)], "goes with --plot"),
        (["--plot", str(tmp_path / "x.png"), "--compare", str(no_scores)], "no trial scores"),
        (["--plot", str(tmp_path / "x.png"), "--compare", str(tmp_path / "gone.json")],
         "cannot read"),
        (["--trial-scores"], "goes with --json"),
    ]
    for extra, message in cases:
        result = run_audio("eval", str(corpus), "--model", "no-such-model", *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_without_matplotlib_one_line_with_the_install_command(corpus, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    for argv in (["eval", str(corpus), "--plot", str(tmp_path / "d.png")],
                 ["speakers", "map", "--db", str(tmp_path / "s.db"), "--plot",
                  str(tmp_path / "m.png")],
                 ["diarize", str(next(corpus.rglob("*.wav"))), "--plot",
                  str(tmp_path / "t.png")]):
        result = run_audio(*argv)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and INSTALL in result.stderr
        assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ the voice map


def groups(count: int, size: int, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, dim))
    labels = np.repeat(np.arange(count), size)
    return centres[labels] + 0.3 * rng.normal(size=(len(labels), dim)), labels


@pytest.mark.parametrize("landmarks", [None, 60])
def test_projection_keeps_each_points_nearest_neighbour_in_its_group(landmarks, monkeypatch):
    if landmarks is not None:  # more points than landmarks: the rest placed among them
        monkeypatch.setattr(projection, "LANDMARKS", landmarks)
    vectors, labels = groups(5, 40)
    positions = projection.project(vectors)
    assert positions.shape == (200, 2) and np.isfinite(positions).all()
    d = ((positions[:, None] - positions[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(labels[d.argmin(axis=1)] == labels) >= 0.95
    assert np.array_equal(positions, projection.project(vectors))  # same data, same picture


def test_landmarks_reach_every_group_before_any_gets_a_second(monkeypatch):
    monkeypatch.setattr(projection, "LANDMARKS", 6)
    vectors, labels = groups(6, 50, seed=2)
    chosen = projection.landmarks(projection.unit(vectors), preferred=0)
    assert sorted(labels[chosen]) == [0, 1, 2, 3, 4, 5]
    first = projection.landmarks(projection.unit(vectors[::-1]), preferred=2)
    assert {0, 1} <= set(first.tolist()) and len(set(first.tolist())) == 6


def test_speakers_map_draws_one_point_per_vector_named_where_enrolled(tmp_path, drawn):
    model = make_model(tmp_path / "model")
    files = make_speakers(tmp_path / "audio")
    db = tmp_path / "store.db"
    common = ["--db", str(db), "--model", str(model), "--engine", "onnx"]
    for name, own in (("ann", files[0][:2]), ("bob", files[1][:2])):
        assert run_audio("enroll", name, *map(str, own), *common).returncode == 0
    indexed = run_audio("index", str(tmp_path / "audio"), *common, "--json")
    assert indexed.returncode == 0, indexed.stderr
    picture = tmp_path / "map.png"
    result = run_audio("speakers", "map", "--db", str(db), "--plot", str(picture), "--json")
    assert result.returncode == 0, result.stderr
    assert picture.read_bytes().startswith(b"\x89PNG")
    record = json.loads(result.stdout)
    assert (record["exemplars"], record["recordings"]) == (4, 12)
    (figure,) = drawn
    (exemplars,) = artist(figure, "exemplars", "collections")
    (recordings,) = artist(figure, "recordings", "collections")
    assert len(exemplars.get_offsets()) == 4 and len(recordings.get_offsets()) == 12
    names = sorted(t.get_text() for t in figure.axes[0].texts)
    assert names == ["ann", "bob"]
    empty = run_audio("speakers", "map", "--db", str(tmp_path / "none.db"), "--plot",
                      str(tmp_path / "none.png"))
    assert empty.returncode != 0 and len(empty.stderr.splitlines()) == 1


# ------------------------------------------------------------------ the diarization timeline


TURNS = [Turn("talk", 0.0, 5.0, "ann"), Turn("talk", 4.0, 8.0, "SPEAKER_01"),
         Turn("talk", 9.0, 10.0, "ann"), Turn("talk", 7.0, 9.5, "SPEAKER_02")]


def bars(collection) -> list[tuple[float, float]]:
    """(start, end) of each bar of a broken_barh collection."""
    out = []
    for path in collection.get_paths():
        xs = path.vertices[:, 0]
        out.append((float(xs.min()), float(xs.max())))
    return sorted(out)


def test_timeline_has_a_lane_per_speaker_with_bars_at_the_turns_and_overlaps_shaded():
    figure = timeline.timeline(TURNS)
    axes = figure.axes[0]
    labels = [t.get_text() for t in axes.get_yticklabels()]
    assert sorted(labels) == ["SPEAKER_01", "SPEAKER_02", "ann"]
    for speaker in ("ann", "SPEAKER_01", "SPEAKER_02"):
        (lane,) = artist(figure, f"system:{speaker}", "collections")
        assert bars(lane) == sorted((t.start, t.end) for t in TURNS if t.speaker == speaker)
    shaded = sorted((p.get_x(), p.get_x() + p.get_width())
                    for p in axes.patches if p.get_gid() == "overlap")
    assert shaded == [(4.0, 5.0), (7.0, 8.0), (9.0, 9.5)]  # two speakers at once, by hand


def test_timeline_with_a_reference_shows_its_lanes_and_the_der_in_the_title(tmp_path):
    reference = [Turn("talk", 0.0, 10.0, "A"), Turn("talk", 2.0, 3.0, "B")]
    hypothesis = [Turn("talk", 0.0, 6.0, "X"), Turn("talk", 6.0, 10.0, "Y")]
    path = tmp_path / "t.png"
    figure = timeline.timeline(hypothesis, path, reference)
    assert path.read_bytes().startswith(b"\x89PNG")
    # X maps to A (6 s shared), Y's 4 s are confusion, B's 1 s is missed: DER 5 / 11
    assert f"DER {5 / 11:.1%}" in figure.axes[0].get_title()
    (lane,) = artist(figure, "reference:A", "collections")
    assert bars(lane) == [(0.0, 10.0)]
    (x_lane,) = artist(figure, "system:X", "collections")
    assert np.array_equal(lane.get_facecolor(), x_lane.get_facecolor())  # A drawn as X
    axes = figure.axes[0]
    top_down = sorted(zip(axes.get_yticks(), [t.get_text() for t in axes.get_yticklabels()],
                          strict=True), reverse=True)
    assert [name for _, name in top_down] == ["ref A", "ref B", "X", "Y"]  # reference on top
    shaded = [(p.get_x(), p.get_x() + p.get_width()) for p in axes.patches
              if p.get_gid() == "reference_overlap"]
    assert shaded == [(2.0, 3.0)]  # A and B at once in the reference; none in the system
    assert not [p for p in axes.patches if p.get_gid() == "overlap"]


def test_diarize_plot_draws_the_turns_it_prints(small_model_dir, shared_dir, tmp_path, drawn):
    import soundfile as sf

    speech = shared_dir / "data/speech/librispeech-test-other-10x10"
    pieces = [sf.read(speech / name, dtype="float32")[0]
              for name in ("1688/1688-142285-0006.flac", "3080/3080-5032-0001.flac")]
    audio = write_wav(tmp_path / "talk.wav", np.concatenate(
        [pieces[0], np.zeros(8000, np.float32), pieces[1]]))
    other = write_wav(tmp_path / "other.wav", pieces[1])
    reference = tmp_path / "ref.rttm"
    reference.write_text("SPEAKER talk 1 0.00 3.00 <NA> <NA> A <NA> <NA>\n"
                         "SPEAKER talk 1 3.50 3.00 <NA> <NA> B <NA> <NA>\n")
    picture = tmp_path / "talk.png"
    common = ["--model", str(small_model_dir), "--segmentation", "none", "--engine", "onnx"]
    result = run_audio("diarize", str(audio), *common, "--json", "--plot", str(picture),
                       "--reference", str(reference))
    assert result.returncode == 0, result.stderr
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    assert turns
    (figure,) = drawn
    for speaker in {t["speaker"] for t in turns}:
        (lane,) = artist(figure, f"system:{speaker}", "collections")
        expected = sorted((t["start"], t["end"]) for t in turns if t["speaker"] == speaker)
        assert np.allclose(bars(lane), expected)
    assert "DER" in figure.axes[0].get_title()
    for extra, message in ((["--plot", str(tmp_path / "two.png"), str(other)], "one recording"),
                           (["--reference", str(reference)], "goes with --plot"),
                           (["--plot", str(tmp_path / "x.png"), "--reference",
                             str(tmp_path / "ref.rttm")], None)):
        if message is None:
            reference.write_text("SPEAKER other 1 0.00 3.00 <NA> <NA> A <NA> <NA>\n")
            message = "no turns of talk"
        bad = run_audio("diarize", str(audio), *common, *extra)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
