"""A store whose --vad vectors an earlier voice-activity rule made (rule 1: Silero's 30 ms
padding, before issue 27): the `vad` column records the rule (0 without VAD, 1 or 2 with
it); adding or querying with the current rule (2) is allowed with a warning, `index --vad`
re-embeds the old rows, exports carry the rule and an export of before it imports as rule 1."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from cli_run import run_audio

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SPEECH = sorted(str(p) for p in SAMPLES.glob("*.flac"))


@pytest.fixture()
def model(small_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(small_model_dir, tmp_path / "model"))


def audio(*args) -> tuple[int, str, list[str]]:
    proc = run_audio(*map(str, args))
    return proc.returncode, proc.stdout, proc.stderr.splitlines()


def column(db: Path, table: str) -> list:
    with sqlite3.connect(db) as conn:
        return [v for (v,) in conn.execute(f"SELECT vad FROM {table} ORDER BY id")]


def made_by_rule_1(db: Path, table: str) -> None:
    """What a store written before issue 27 holds: vad = 1 for every --vad vector."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(f"UPDATE {table} SET vad = 1 WHERE vad > 0")
    conn.close()


def warnings_of(err: list[str]) -> list[str]:
    return [line for line in err if line.startswith("audio: warning:")]


def test_index_replaces_the_vectors_of_an_earlier_rule(model, tmp_path):
    db = tmp_path / "s.db"
    common = ("--model", model, "--db", db)
    assert audio("index", SPEECH[0], SPEECH[1], *common, "--vad")[0] == 0
    assert column(db, "recordings") == [2, 2]
    made_by_rule_1(db, "recordings")
    code, out, err = audio("search", SPEECH[0], *common, "--vad")
    assert code == 0
    assert warnings_of(err) == [
        f"audio: warning: the store's recordings of {model} were made with an earlier "
        "voice-activity rule, this query with rule 2; the earlier rule dropped quiet onsets "
        "and endings, so scores differ slightly; index the files again with --vad to update "
        "them (it re-embeds them)"]
    # files unchanged on disk are embedded again when an earlier rule made their vectors
    code, out, err = audio("index", SPEECH[0], SPEECH[1], *common, "--vad", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["updated"], report["unchanged"]) == (2, 0)
    assert column(db, "recordings") == [2, 2]
    code, out, err = audio("index", SPEECH[0], SPEECH[1], *common, "--vad", "--json")
    assert json.loads(out)["unchanged"] == 2 and not warnings_of(err)
    code, out, err = audio("search", SPEECH[0], *common, "--vad")
    assert code == 0 and not warnings_of(err)
    # without VAD nothing changes: still refused, as before rules
    code, out, err = audio("index", SPEECH[2], *common)
    assert code == 2 and "were made with --vad" in err[-1]


def test_enroll_and_identify_warn_of_an_earlier_rule(model, tmp_path):
    db = tmp_path / "s.db"
    common = ("--model", model, "--db", db)
    assert audio("enroll", "ann", SPEECH[0], *common, "--vad")[0] == 0
    made_by_rule_1(db, "exemplars")
    code, out, err = audio("identify", SPEECH[1], *common, "--vad", "--json")
    assert code in (0, 1) and json.loads(out)["candidates"]
    assert [w.split(";")[0] for w in warnings_of(err)] == [
        f"audio: warning: the store's exemplars of {model} were made with an earlier "
        "voice-activity rule, this query with rule 2"]
    code, out, err = audio("enroll", "ann", SPEECH[1], *common, "--vad")
    assert code == 0, err
    assert warnings_of(err) == [
        f"audio: warning: some of the store's exemplars of {model} were made with an earlier "
        "voice-activity rule (version 1, which dropped quiet onsets and endings), this enroll "
        "uses version 2; scores across them differ slightly: remove the speakers (audio "
        "speakers remove NAME) and enroll their files again with --vad to update them"]
    assert column(db, "exemplars") == [1, 2]


def test_exports_carry_the_rule_and_older_exports_are_rule_1(model, tmp_path):
    db, copy, older = tmp_path / "s.db", tmp_path / "t.db", tmp_path / "u.db"
    assert audio("enroll", "ann", SPEECH[0], "--model", model, "--db", db, "--vad")[0] == 0
    assert audio("enroll", "bob", SPEECH[1], "--model", model, "--db", db, "--vad")[0] == 0
    made_by_rule_1(db, "exemplars")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE exemplars SET vad = 2 WHERE source = ?", (SPEECH[1],))
    conn.close()
    export = tmp_path / "x.json"
    assert audio("speakers", "export", export, "--db", db)[0] == 0
    document = json.loads(export.read_text())
    made = {s["name"]: (s["exemplars"][0]["vad"], s["exemplars"][0]["vad_rule"])
            for s in document["speakers"]}
    assert made == {"ann": (True, 1), "bob": (True, 2)}
    assert audio("speakers", "import", export, "--db", copy)[0] == 0
    assert sorted(column(copy, "exemplars")) == [1, 2]
    # an export written before rules has no vad_rule: its --vad exemplars are rule 1
    for speaker in document["speakers"]:
        for exemplar in speaker["exemplars"]:
            del exemplar["vad_rule"]
    export.write_text(json.dumps(document))
    assert audio("speakers", "import", export, "--db", older)[0] == 0
    assert column(older, "exemplars") == [1, 1]
    # a rule that does not exist is a malformed export
    document["speakers"][0]["exemplars"][0]["vad_rule"] = 9
    export.write_text(json.dumps(document))
    code, out, err = audio("speakers", "import", export, "--db", tmp_path / "v.db")
    assert code == 2 and "malformed exemplar of 'ann'" in err[-1]
