"""The package's layout holds: imports point one way, no circles, options travel as one value.

Stages, lowest first: engines (a library of its own), then audio_cli's frontend and models,
pipeline, evaluation and diarization, store, plots, cli. A module may import only from its
own stage's lower modules (no circles) or from stages below it. Imports inside functions count too.

Modules are cut by what they do, not to a line count: MAX_LINES is only a smell check, far
above what a module with one job needs. The main path is checked for what it must not
import (store, evaluation), not for a number of files.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from model_factory import small_config, write_model
from signals import voiced, write_wav

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("audio_cli", "engines")
# Rank of each stage: a module may import from stages of a lower rank, never a higher one.
STAGES = {
    "engines": 0,
    "audio_cli.frontend": 1,
    "audio_cli.models": 1,
    "audio_cli.pipeline": 2,
    "audio_cli.evaluation": 3,
    "audio_cli.diarization": 3,
    "audio_cli.store": 4,
    "audio_cli.plots": 5,  # draws evaluation, diarization and store data; the CLI calls it
    "audio_cli.cli": 6,
}
MAX_LINES = 600  # a smell check, not a budget: cut modules by concern
MAX_POSITIONAL_ARGS = 6  # more travel as one options value


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of both packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules a module imports anywhere in its body (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        targets |= {n for n in names if n in known and n != name}
    return targets


def stage(name: str) -> str | None:
    return next((s for s in sorted(STAGES, key=len, reverse=True)
                 if name == s or name.startswith(s + ".")), None)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(path, name, set(found)) for name, path in found.items()}


def test_engines_import_no_application_code(graph):
    upward = [(a, b) for a, targets in graph.items() if a.startswith("engines")
              for b in targets if b.startswith("audio_cli")]
    assert upward == []


def test_every_module_sits_in_a_stage_and_imports_only_downward(graph):
    # The package root only names the version and, lazily, the public API; `python -m audio_cli`
    # runs the CLI. Anything may read the version; nothing else may import these two.
    facade = {"audio_cli", "audio_cli.__main__"}
    wrong = []
    for a, targets in graph.items():
        if a in facade:
            continue
        assert stage(a) is not None, f"{a} belongs to no stage"
        for b in targets:
            if b == "audio_cli.__main__":
                wrong.append((a, b))
            elif b != "audio_cli" and stage(b) != stage(a) and STAGES[stage(b)] >= STAGES[stage(a)]:
                wrong.append((a, b))
    assert wrong == []


def test_no_import_circles(graph):
    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    circles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert circles == []


def test_no_module_is_very_long():
    long = {}
    for name, path in modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long[name] = lines
    assert long == {}


def long_calls() -> list[str]:
    """`module:line callee(n positional)` for each call passing more than MAX_POSITIONAL_ARGS
    positional arguments (a starred argument is not counted)."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            count = sum(not isinstance(arg, ast.Starred) for arg in node.args)
            if count > MAX_POSITIONAL_ARGS:
                found.append(f"{name}:{node.lineno} {ast.unparse(node.func)}({count} positional)")
    return found


def test_no_call_passes_many_positional_arguments():
    assert long_calls() == []


TRACE = textwrap.dedent("""
    import sys
    from pathlib import Path
    root = Path(sys.argv[1]).resolve()
    packages = [root / "audio_cli", root / "engines"]
    seen = set()
    def tracer(frame, event, arg):
        path = Path(frame.f_code.co_filename)
        if path.name not in ("__init__.py", "__main__.py") and any(
                p in path.parents for p in packages):
            seen.add(str(path.relative_to(root)))
    sys.setprofile(tracer)
    from audio_cli.cli.main import main
    try:
        main(sys.argv[2:])
    except SystemExit as exit:
        code = exit.code
    sys.setprofile(None)
    print("\\n".join(sorted(seen)), file=sys.stderr)
    sys.exit(code)
""")


@pytest.mark.slow
def test_embed_speaker_stays_off_the_store_and_evaluation(tmp_path):
    """`audio embed-speaker FILE --model DIR --json` imports no store or evaluation code, and a
    cached start runs fewer files than the first one."""
    config = small_config()
    model = tmp_path / "model"
    write_model(model, config, seed=3)
    clip = write_wav(tmp_path / "clip.wav", voiced(1.5))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    counts = []
    for _ in ("first run: builds the ONNX graph", "second run: cached"):
        result = subprocess.run(
            [sys.executable, "-c", TRACE, str(ROOT), "embed-speaker", str(clip), "--model",
             str(model), "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        files = result.stderr.split()
        assert not [f for f in files if f.startswith(("audio_cli/store", "audio_cli/evaluation",
                                                      "audio_cli/cli/store", "audio_cli/cli/eval"))]
        counts.append(len(files))
    assert counts[1] < counts[0]  # the cached start does not even import the ONNX translation
