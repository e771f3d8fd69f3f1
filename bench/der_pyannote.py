"""Score diarization with pyannote.metrics; started by bench/diarize_peers.py in an environment
that has it (senko's, CONTRIBUTING.md). Imports nothing of this project.

    PYTHON bench/der_pyannote.py REF.rttm HYP.rttm UEM

Prints one JSON object a line: per uri in the reference, then the total ("uri": "TOTAL",
time-weighted: the components summed over files), for two conventions, overlap scored in both:
"full" (no collar) and "fair" (0.25 s collar each side of a reference boundary, which
pyannote.metrics calls collar=0.5). Components in seconds: total (reference speech), missed,
false_alarm, confusion, and der = (missed + false_alarm + confusion) / total. A uri the
hypothesis lacks is scored as all missed.
"""

from __future__ import annotations

import json
import sys

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

CONVENTIONS = {"full": 0.0, "fair": 0.5}  # pyannote collar = total width around a boundary
COMPONENTS = {"total": "total", "missed": "missed detection", "false_alarm": "false alarm",
              "confusion": "confusion"}


def read_rttm(path: str) -> dict[str, Annotation]:
    out: dict[str, Annotation] = {}
    with open(path, encoding="utf-8") as handle:
        for n, line in enumerate(handle):
            fields = line.split()
            if not fields or fields[0] != "SPEAKER":
                continue
            uri, start, duration = fields[1], float(fields[3]), float(fields[4])
            annotation = out.setdefault(uri, Annotation(uri=uri))
            annotation[Segment(start, start + duration), n] = fields[7]
    return out


def read_uem(path: str) -> dict[str, Timeline]:
    out: dict[str, list[Segment]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 4:
                out.setdefault(fields[0], []).append(Segment(float(fields[2]), float(fields[3])))
    return {uri: Timeline(segments, uri=uri) for uri, segments in out.items()}


def main(argv: list[str]) -> int:
    reference, hypothesis, uem = read_rttm(argv[0]), read_rttm(argv[1]), read_uem(argv[2])
    metrics = {name: DiarizationErrorRate(collar=collar, skip_overlap=False)
               for name, collar in CONVENTIONS.items()}
    for uri in sorted(reference):
        row = {"uri": uri}
        hyp = hypothesis.get(uri, Annotation(uri=uri))
        for name, metric in metrics.items():
            detail = metric(reference[uri], hyp, uem=uem.get(uri), detailed=True)
            row[name] = {key: detail[source] for key, source in COMPONENTS.items()}
            row[name]["der"] = detail["diarization error rate"]
        print(json.dumps(row))
    total = {"uri": "TOTAL"}
    for name, metric in metrics.items():
        total[name] = {key: metric.accumulated_[source] for key, source in COMPONENTS.items()}
        total[name]["der"] = abs(metric)
    print(json.dumps(total))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
