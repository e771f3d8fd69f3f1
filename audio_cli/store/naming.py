"""Names for a diarization's speakers from the speakers enrolled in a store (`audio diarize
--db STORE`).

Each speaker of a Diarization (result.py: one unit mean vector per label) is scored against
every speaker enrolled for the same model, as `audio identify` scores a recording
(speakers.speaker_score, "mean": cosine with the re-normalised mean of the exemplars), and a
pair is a match when its score reaches the store's threshold (speakers.pick_threshold: the
calibrated value, else the model's default), as for identify. Names are then given by one
optimal assignment (assignment.min_cost_assignment) over the matching pairs, weighing each by
how far its score passes the threshold: one name goes to one speaker at most and each speaker
takes one name at most, so an enrolled speaker absent from the recording is never forced onto
an unknown voice, and an unknown voice keeps its anonymous label (SPEAKER_xx).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from audio_cli.diarization.activity import speaker_names
from audio_cli.diarization.assignment import min_cost_assignment
from audio_cli.diarization.result import Diarization
from audio_cli.pipeline.handle import ModelHandle
from audio_cli.store.db import Store
from audio_cli.store.settings import Made, warn_query
from audio_cli.store.speakers import (
    Threshold,
    exemplar_vectors,
    pick_threshold,
    speaker_score,
    stored_threshold,
)

SCORING = "mean"  # identify's default: the speaker's exemplars as one re-normalised mean
# A pair scoring exactly the threshold is a match (as in identify: score >= threshold); this
# weight keeps it from weighing the same as no match at all in the assignment.
AT_THRESHOLD = 1e-6


@dataclass(frozen=True)
class Match:
    """An enrolled speaker's name given to a diarized speaker, and the score of the pair."""

    name: str
    score: float  # raw cosine in [-1, 1] (speakers.speaker_score)


def match_speakers(vectors: dict[str, np.ndarray], enrolled: dict[str, np.ndarray],
                   threshold: float) -> dict[str, Match]:
    """Diarized label -> its Match, for the labels that take an enrolled name.

    vectors: label -> unit vector of that diarized speaker; enrolled: name -> (k, dim)
    exemplars of the same model. Only pairs scoring at least `threshold` can be matched; of
    those, the one-to-one choice that maximises the summed excess over the threshold."""
    labels, names = list(vectors), list(enrolled)
    if not labels or not names:
        return {}
    scores = np.array([[speaker_score(enrolled[name], vectors[label], SCORING)
                        for name in names] for label in labels])
    weight = np.where(scores >= threshold, scores - threshold + AT_THRESHOLD, 0.0)
    return {labels[row]: Match(names[column], float(scores[row, column]))
            for row, column in min_cost_assignment(-weight) if weight[row, column] > 0}


def renamed(result: Diarization, matches: dict[str, Match]) -> Diarization:
    """`result` with each matched label replaced by its name and `scores` set (name -> score;
    None for the speakers left anonymous). An anonymous label that an enrolled speaker is also
    called takes the next SPEAKER_xx free, so that two speakers never share a label."""
    taken = {m.name for m in matches.values()}
    labels = list(dict.fromkeys([*result.vectors, *(t.speaker for t in result.turns)]))
    # labels without a vector are speech too short to embed: never matched
    spare = (name for name in speaker_names(len(labels) + 2 * len(taken))
             if name not in taken and name not in labels)
    new = {label: matches[label].name if label in matches else
           label if label not in taken else next(spare) for label in labels}
    scores = {new[label]: (matches[label].score if label in matches else None) for label in new}
    return Diarization([replace(t, speaker=new[t.speaker]) for t in result.turns],
                       {new[label]: v for label, v in result.vectors.items()}, scores)


class Namer:
    """A store's enrolled speakers of one model, read once, and the threshold their scores
    must reach; `name(result)` names the speakers of a Diarization."""

    def __init__(self, store: Store, identity: ModelHandle, made: Made):
        """Raises StoreError for a store without enrolled speakers and ModelError when none
        is enrolled with this model (speakers.exemplar_vectors); warns when the exemplars
        were made otherwise than `made` (settings.warn_query)."""
        self.enrolled, self.skipped = exemplar_vectors(store, identity)
        warn_query(store, "exemplars", identity.digest, identity.name, made)
        self.threshold: Threshold = pick_threshold(None, stored_threshold(store, identity),
                                                   identity.config.model_type)

    def name(self, result: Diarization) -> Diarization:
        return renamed(result, match_speakers(result.vectors, self.enrolled,
                                              self.threshold.value))


class NamedDiarizer:
    """A diarization.pipeline.Diarizer whose results come out named by a Namer."""

    def __init__(self, diarizer, namer: Namer):
        self.diarizer = diarizer
        self.namer = namer

    @property
    def sample_rate(self) -> int:
        return self.diarizer.sample_rate

    def diarize(self, audio, uri: str) -> Diarization:
        return self.namer.name(self.diarizer.diarize(audio, uri))
