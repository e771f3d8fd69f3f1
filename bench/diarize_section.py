"""Section (k) of `python -m bench`: diarization, this project beside senko on the same files
in one run (bench/diarize_peers.py), then this project alone on one hour of conversation
(and, with `--diarize-hours 4`, the hour played four times: memory over length).

Skipped, with the reason printed, where ../shared (the AMI excerpts, CAM++, the segmentation
model, the LibriSpeech readers) is absent; senko's rows where its environment is absent.
The simulated conversations and the hour are built on first use into bench/out/conversations
(bench/conversations.py, seed 0).
"""

from __future__ import annotations

from .common import OUT_DIR, Plan, log
from .conversations import SPEECH_DIR, loop_hour
from .conversations import main as build_conversations
from .diarize_peers import (
    AMI,
    CAMPPLUS,
    SEGMENTATION,
    SENKO_PYTHON,
    SIM,
    measure,
    parse,
    set_table,
    summary,
)

ROUNDS = 3  # the side-by-side sets run this many times, the systems in turn: one run of
#            each varied by 10-25 % in RTF between two runs on the same idle machine
HEADING = "## (k) Diarization: this project and senko on the same files; one hour and more"


def section_diarize(plan: Plan, hours: int, notes: list[str]) -> list[str]:
    lines = [HEADING, ""]
    missing = [p for p in (AMI, CAMPPLUS, SEGMENTATION, SPEECH_DIR) if not p.exists()]
    if missing:
        reason = f"(k) skipped: {missing[0]} is absent (../shared)"
        log(reason)
        notes.append(reason)
        return lines + [f"Skipped: {missing[0]} is absent (../shared)."]
    systems = ["audio", "senko"]
    if not SENKO_PYTHON.is_file():
        reason = (f"(k) senko skipped: no {SENKO_PYTHON} (CONTRIBUTING.md, Diarization data "
                  "and peers: how to build senko's environment)")
        log(reason)
        notes.append(reason)
        systems = ["audio"]
    if not (SIM / "reference.uem").is_file() or \
            (not plan.quick and not (SIM / "hour" / "reference.uem").is_file()):
        log("building the simulated conversations (bench/conversations.py)")
        build_conversations(["--out", str(SIM), "--count", "10", "--force",
                             *([] if plan.quick else ["--hour"])])
    out = OUT_DIR / "diarize-bench"
    side = ["--systems", *systems, "--set", f"ami={AMI}", "--set", f"sim={SIM}",
            "--out", str(out), "--model", str(CAMPPLUS), "--segmentation", str(SEGMENTATION)]
    results = measure(parse(side + (["--limit", "2"] if plan.quick else
                                    ["--rounds", str(ROUNDS)])))
    long = []
    if not plan.quick:
        sets = ["--set", f"hour={SIM / 'hour'}"]
        if hours > 1:
            looped = SIM / f"hourx{hours}"
            if not (looped / "reference.uem").is_file():
                log(f"writing the hour played {hours} times")
                loop_hour(SIM / "hour", hours, looped)
            sets += ["--set", f"hours{hours}={looped}"]
        long = measure(parse(["--systems", "audio", *sets, "--out", str(out),
                              "--model", str(CAMPPLUS), "--segmentation", str(SEGMENTATION)]))
    lines += [
        "Each system diarizes each set's files in one process of its own (this project: "
        "bench/diarize_driver.py, 2 threads, CAM++ and segmentation-3.0; senko 0.2.2: "
        f"bench/senko_driver.py, its defaults), ami and sim {ROUNDS} times in turn, the rows "
        "giving each system's median round. Start-up = process start to a ready diarizer; "
        "RTF = the files' diarize calls (decoding included) over their audio seconds; peak "
        "RSS = the process's ru_maxrss; DER by `audio eval-diarization`, overlap scored, "
        "full = no collar, fair = 0.25 s collar each side. ami = the ten AMI excerpts (30 s), "
        "sim = the ten simulated conversations (2-5 min), hour = one simulated hour of 8 "
        "readers" + (f", hours{hours} = that hour played {hours} times in a row" if hours > 1
                     else "") + ".", "", *summary(results + long)]
    for result in results + long:
        lines += set_table(result)
    return lines
