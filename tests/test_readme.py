"""The documentation's runnable parts run as written, and its links lead somewhere.

The README's Quick start is run command by command, and docs/python.md's code block is run as
a program. Only what cannot run here is replaced: the hub model (no internet in tests) by a
local model, the checkpoint a reader copies by the fixture checkpoint, and `../shared` by the
shared folder. The exit statuses and results the commands' comments and the text state are
the ones checked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DIR

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON_DOC = ROOT / "docs" / "python.md"
CLI_DOC = ROOT / "docs" / "cli.md"
DOCS = [README, ROOT / "CONTRIBUTING.md", ROOT / "bench" / "RESULTS.md",
        *sorted((ROOT / "docs").glob("*.md"))]
SAMPLES = ROOT / "samples"
CAMPPLUS_DIR = "models/campplus-zh-en-common"
CHECKPOINT = "fixtures/wespeaker-random/pytorch_model.bin"
DEFAULT_MODEL = "aufklarer/WeSpeaker-ResNet34-LM-MLX"


def section(title: str, path: Path = README) -> str:
    """The text under the `## title` heading of `path`, up to the next `## ` heading."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of `language` in `text`."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


def shell_commands(block: str) -> list[tuple[str, str]]:
    """(command, its trailing comment) per command of a shell block, `&&` chains split."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        code, _, comment = line.partition(" #")
        if line.lstrip().startswith("#") or not code.strip():
            continue
        commands += [(part.strip(), comment) for part in code.split("&&")]
    return commands


def audio_command() -> list[str]:
    """The installed `audio` script next to this Python, else `python -m audio_cli`."""
    script = Path(sys.executable).with_name("audio")
    return [str(script)] if script.exists() else [sys.executable, "-m", "audio_cli"]


def offline_env(tmp_path: Path) -> dict[str, str]:
    """An environment without the hub and with an empty hub cache."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


def test_quick_start_begins_with_the_whole_set_up() -> None:
    """Its first block is two lines: set up and run the main job, then run the tests."""
    first = code_blocks(section("Quick start"), "sh")[0]
    lines = [line for line in first.splitlines() if line.strip()]
    assert len(lines) == 2, "the first block is the whole set-up: two lines"
    set_up = [command for command, _ in shell_commands(lines[0])]
    tests = [command for command, _ in shell_commands(lines[1])]
    assert set_up[0] == "make install" and set_up[-1].startswith("audio ")
    assert tests == ["make test"]
    for command in set_up + tests:
        words = shlex.split(command)
        if words[0] == "make":  # the target exists (a dry run changes nothing)
            done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        elif words[0] == "source":
            assert words[1] == ".venv/bin/activate"  # what `make install` creates
        for word in words[1:]:
            if word.startswith("samples/"):
                assert (ROOT / word).is_file(), f"{word} is not shipped"


def test_the_default_model_offline_fails_as_the_quick_start_says(tmp_path) -> None:
    text = section("Quick start")
    quoted = re.search(r"exit status (\d+) and\s+`(audio: error: [^`]*)`", text)
    assert quoted, "the Quick start no longer quotes the offline error"
    command = shlex.split(shell_commands(code_blocks(text, "sh")[0])[2][0])
    assert command[0] == "audio" and "--model" not in command
    (tmp_path / "samples").symlink_to(SAMPLES)
    done = subprocess.run(audio_command() + command[1:], cwd=tmp_path, capture_output=True,
                          text=True, env=offline_env(tmp_path), timeout=120)
    assert done.returncode == int(quoted.group(1)), done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(quoted.group(2)), done.stderr
    assert len(done.stderr.splitlines()) == 1


def stated_compare_outputs(text: str) -> list[tuple[float, str]]:
    """The (score, verdict) pairs the Quick start says CAM++ prints for the compare commands."""
    stated = re.search(r"With CAM\+\+ these print (.*?)(?:\n\n|\Z)", text, flags=re.S)
    assert stated, "the Quick start no longer states what compare prints"
    lines = re.findall(r"`([-0-9.]+)  ([a-z ]+) \(threshold", stated.group(1))
    return [(float(score), verdict) for score, verdict in lines]


@pytest.mark.shared
@pytest.mark.slow
def test_quick_start_commands_run_offline(shared_dir: Path, tmp_path) -> None:
    """Every `audio` command of the Quick start, in order; `--model CAM++` where none is given."""
    text = section("Quick start")
    campplus = shared_dir / CAMPPLUS_DIR
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "samples").symlink_to(SAMPLES)
    env = {**offline_env(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    stated = stated_compare_outputs(text)
    compares, ran = [], 0
    for block in code_blocks(text, "sh"):
        for command, comment in shell_commands(block):
            words = shlex.split(command)
            if words[0] in ("make", "source"):
                continue  # this environment is what `make install` made; `make test` is this
            assert words[0] == "audio", f"the test does not know how to run {command!r}"
            words = [str(shared_dir / CHECKPOINT) if w == "pytorch_model.bin"
                     else str(SHARED_DIR / w[len("../shared/"):]) if w.startswith("../shared/")
                     else w for w in words[1:]]
            if "--model" not in words and words[0] != "convert":
                words += ["--model", str(campplus)]
            expected = re.search(r"exit (\d+)", comment)
            done = subprocess.run(audio_command() + words, cwd=cwd, capture_output=True,
                                  text=True, env=env, timeout=300)
            assert done.returncode == (int(expected.group(1)) if expected else 0), (
                command, done.stderr)
            assert "Traceback" not in done.stderr
            if words[0] == "compare":
                compares.append(done.stdout.strip())
            ran += 1
    assert ran >= 5
    assert len(compares) == len(stated)
    for printed, (score, verdict) in zip(compares, stated, strict=True):
        assert verdict in printed
        assert float(printed.split()[0]) == pytest.approx(score, abs=0.005)


def test_python_api_block_runs(small_model_dir: Path, tmp_path) -> None:
    """docs/python.md's code block as written, with a local model in place of the hub's."""
    blocks = [b for b in code_blocks(PYTHON_DOC.read_text(encoding="utf-8"), "python")
              if "Diarizer" not in b]
    assert blocks
    for code in blocks:
        code, count = re.subn(rf'from_pretrained\("{re.escape(DEFAULT_MODEL)}"',
                              f"from_pretrained({str(small_model_dir)!r}", code)
        assert count == 1, "the block no longer loads the default model from the hub"
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, env=offline_env(tmp_path), timeout=300)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert -1.0 <= float(lines[0]) <= 1.0
        assert any(line.startswith("missing.wav missing.wav:") for line in lines)


@pytest.mark.slow
def test_python_diarize_block_runs(small_model_dir: Path, shared_dir: Path, tmp_path) -> None:
    """docs/python.md's diarization block as written, with a local embedding model and the
    shared segmentation checkpoint in place of the hub's."""
    checkpoint = shared_dir / "models/pyannote-segmentation-3.0/pytorch_model.bin"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is not present")
    blocks = [b for b in code_blocks(PYTHON_DOC.read_text(encoding="utf-8"), "python")
              if "Diarizer" in b]
    assert len(blocks) == 1
    code, count = re.subn(rf'DiarizeOptions\(model="{re.escape(DEFAULT_MODEL)}"',
                          f"DiarizeOptions(model={str(small_model_dir)!r}, "
                          f"segmentation={str(checkpoint)!r}", blocks[0])
    assert count == 1, "the block no longer names the default model"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env=offline_env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr
    *turns, vectors = done.stdout.splitlines()
    assert turns and all(re.fullmatch(r"\d+\.\d\d \d+\.\d\d SPEAKER_\d\d", t) for t in turns)
    assert vectors.startswith("{'SPEAKER_00': array(")


def table(text: str, header: str) -> str:
    """The markdown table whose first line is `header`."""
    start = text.index(header)
    end = text.find("\n\n", start)
    return text[start:end if end >= 0 else None]


def test_the_exit_status_table_is_the_same_in_the_cli_reference() -> None:
    header = "| status | meaning |"
    readme = table(section("Exit status"), header)
    assert table(CLI_DOC.read_text(encoding="utf-8"), header) == readme


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes for the headings of a markdown file (outside code blocks)."""
    text = re.sub(r"^```.*?^```$", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings_that_exist(doc: Path) -> None:
    text = re.sub(r"^```.*?^```$", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto: ...
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: links to nothing: {broken}"
