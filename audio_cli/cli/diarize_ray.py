"""`diarize --ray ADDRESS --output DIR.parquet`: `audio diarize` on a Ray cluster, with the
machinery of embed-speaker's (cli/distributed.py, cli/shards.py).

One input per task: each actor (`DiarizeBatch`) loads the embedding and segmentation models
once and diarizes one recording per call with the one-machine code (cli/diarize.py
`outcomes`). Rows are diarize's Parquet rows (file, start, end, speaker, overlap, error) and,
for resuming, the file's size and mtime_ns and `settings`: a digest of both models' weights and
the options that change the turns. A recording without speech gets one row whose start, end
and speaker are null, so that a rerun knows it is done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from audio_cli.cli import shards
from audio_cli.cli.distributed import RayBatch, RayJob, check_digest, model_spec, run_on_ray
from audio_cli.diarization.pipeline import NO_SEGMENTATION, DiarizeOptions

KEYS = shards.Keys(path="file", identity="settings",
                   what="turns made with other models or options (settings",
                   kind="a diarize --ray shard")
FILES_PER_TASK = 1  # a recording can be hours long: one per actor call


def segmentation_digest(segmentation: str | None) -> str:
    """The segmentation model's identity (its converted folder's digest), or `none`."""
    if segmentation == NO_SEGMENTATION:
        return NO_SEGMENTATION
    from audio_cli.models.segmentation import resolve_segmentation
    from engines.files import model_digest

    return model_digest(resolve_segmentation(segmentation))


def settings_digest(options: DiarizeOptions, model: str, segmentation: str,
                    max_duration: float) -> str:
    """What decides the turns: both models' digests and the options (16 hex digits)."""
    count = options.count
    fields = {"model": model, "segmentation": segmentation, "exclusive": options.exclusive,
              "count": [count.exact, count.low, count.high], "clustering": options.clustering,
              "threshold": options.threshold, "step": options.step,
              "max_duration": max_duration}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


class DiarizeBatch(RayBatch):
    """diarize's actor: loads both models once (checking they are the driver's), then
    diarizes the recordings of each call."""

    def __init__(self, options: DiarizeOptions, digests: tuple[str, str], settings: str,
                 max_duration: float):
        from audio_cli.diarization.pipeline import Diarizer
        from audio_cli.pipeline.handle import open_model
        from audio_cli.pipeline.parallel import engine_threads
        from audio_cli.pipeline.speaker import SpeakerEmbedder

        model = open_model(options.model, options.engine)
        check_digest(options.model, model.digest, digests[0])
        check_digest(options.segmentation, segmentation_digest(options.segmentation),
                     digests[1])
        speaker = SpeakerEmbedder(model, options.engine,
                                  engine_threads(options.engine, options.threads))
        self.diarizer = Diarizer(options, speaker=speaker)
        self.settings, self.max_duration = settings, max_duration

    def outcomes(self, items):
        from audio_cli.cli.outcomes import Reporter
        from audio_cli.cli.turn_rows import outcomes

        return outcomes(self.diarizer, items, Reporter(len(items), False), self.max_duration)

    def rows(self, outcome, path: str, key: tuple) -> list[dict]:
        return ray_rows(outcome, path, key, self.settings)

    def table(self, rows: list[dict]):
        from audio_cli.cli.turn_rows import turn_schema, turn_table

        return turn_table(rows, turn_schema(keys=True))


def ray_rows(outcome, path: str, key: tuple, settings: str) -> list[dict]:
    """An input's --ray rows: its turns (one null turn without speech) or its error, with
    the path as given and the resume keys."""
    from audio_cli.cli.turn_rows import records

    size, mtime = key
    rows = records(outcome) or [{}]
    return [{**row, "file": path, "size": size, "mtime_ns": mtime, "settings": settings}
            for row in rows]


def diarize_on_ray(address: str, files: list[str], options: DiarizeOptions, *,
                   output: str | None, force: bool, json_output: bool,
                   max_duration: float) -> int:
    """Run `diarize` on Ray into a folder of Parquet shards; returns the exit status."""

    def prepare() -> RayJob:
        from audio_cli.cli.turn_rows import turn_schema, turn_table
        from audio_cli.pipeline.handle import open_model

        model = open_model(options.model, options.engine)  # on the driver: no engine built
        digests = (model.digest, segmentation_digest(options.segmentation))
        settings = settings_digest(options, *digests, max_duration)
        segmentation = options.segmentation
        if segmentation not in (None, NO_SEGMENTATION):
            segmentation = model_spec(segmentation)
        threads = options.threads or 1
        sent = dataclasses.replace(options, model=model_spec(options.model),
                                   segmentation=segmentation, threads=threads)

        def failures(outcomes: list):
            return turn_table([row for o in outcomes for row in ray_rows(
                o, o.file, (None, None), settings)], turn_schema(keys=True))

        return RayJob(verb="diarize", actor=DiarizeBatch, arguments={
            "options": sent, "digests": digests, "settings": settings,
            "max_duration": max_duration}, digest=settings, schema=turn_schema(keys=True),
            keys=KEYS, failures=failures, threads=threads, batch_files=FILES_PER_TASK)

    return run_on_ray(address, files, prepare, output=output, force=force,
                      json_output=json_output)
