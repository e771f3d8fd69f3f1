"""Record pyannote's own segmentation-3.0 outputs on real clips, as test fixtures.

Runs ONLY in a separate environment with pyannote.audio and torch (not the project's .venv;
tests/fixtures/segmentation/README.md says how it was built). pytest does not collect it
(no test_ prefix, and tests/tools is not a test package).

    /work/pyannote-env/bin/python tests/tools/record_segmentation_reference.py \
        [--shared ../shared] [--out tests/fixtures/segmentation]

It loads ../shared/models/pyannote-segmentation-3.0/pytorch_model.bin with pyannote's
`Model.from_pretrained` (a local path), reads each clip of CLIPS with soundfile (float32, as
the project reads it), pads a clip shorter than the model's 10 s chunk with zeros at the end
(what pyannote's `Inference` does with a short file or last chunk: checked below against
`Inference(skip_aggregation=True, skip_conversion=True)`), feeds the samples as a
(1, 1, 160000) tensor to the model and saves its raw output, log-probabilities over the 7
powerset classes, as `log_probs.npy` (clips, 589, 7) float32. `clips.json` names the clips;
`pyannote.json` holds the frame timing and powerset mapping pyannote reports. No audio and no
weights are written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyannote.audio
import soundfile
import torch
import torch.nn.functional as F  # noqa: N812 - torch's usual name
from pyannote.audio import Inference, Model
from pyannote.audio.utils.powerset import Powerset

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = "models/pyannote-segmentation-3.0/pytorch_model.bin"
SAMPLE_RATE = 16000
# (file under ../shared, first sample, samples): two AMI excerpts with overlapping speech (the
# 10 s windows with the most overlap in reference.rttm), a LibriSpeech utterance, and a whole
# LibriSpeech utterance shorter than 10 s (7.06 s, padded)
CLIPS = [
    ("data/diarization/ami-debug-train/trn00.wav", 16 * SAMPLE_RATE, 10 * SAMPLE_RATE),
    ("data/diarization/ami-debug-train/trn08.wav", 88000, 10 * SAMPLE_RATE),
    ("data/speech/librispeech-test-other-10x10/1688/1688-142285-0000.flac",
     2 * SAMPLE_RATE, 10 * SAMPLE_RATE),
    ("data/speech/librispeech-test-other-10x10/1688/1688-142285-0007.flac", 0, None),
]


def read_clip(shared: Path, name: str, start: int, count: int | None) -> np.ndarray:
    samples, rate = soundfile.read(shared / name, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE and samples.shape[1] == 1, (name, rate, samples.shape)
    mono = samples[:, 0]
    return mono[start:] if count is None else mono[start:start + count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/segmentation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = Model.from_pretrained(str(args.shared / CHECKPOINT))
    model.eval()
    chunk = round(model.specifications.duration * SAMPLE_RATE)
    outputs, clips = [], []
    for name, start, count in CLIPS:
        clip = torch.from_numpy(read_clip(args.shared, name, start, count))
        padded = F.pad(clip, (0, chunk - len(clip)))
        with torch.inference_mode():
            out = model(padded[None, None])[0].numpy()
        if len(clip) < chunk:  # pyannote's own handling of a short input: the same padding
            inference = Inference(model, skip_aggregation=True, skip_conversion=True,
                                  batch_size=1)
            sliding = inference({"waveform": clip[None], "sample_rate": SAMPLE_RATE})
            assert sliding.data.shape == (1, *out.shape), sliding.data.shape
            assert np.abs(sliding.data[0] - out).max() < 1e-6
        outputs.append(out.astype(np.float32))
        clips.append({"file": name, "start": start, "samples": len(clip), "padded_to": chunk})
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "log_probs.npy", np.stack(outputs))
    (args.out / "clips.json").write_text(json.dumps(clips, indent=1) + "\n", encoding="utf-8")
    field = model.receptive_field
    facts = {
        "versions": {"pyannote.audio": pyannote.audio.__version__, "torch": torch.__version__,
                     "numpy": np.__version__},
        "frame_start": field.start, "frame_duration": field.duration, "frame_step": field.step,
        "frame_centre_samples": [int(model.receptive_field_center(i)) for i in (0, 1, 588)],
        "num_frames": int(model.num_frames(chunk)),
        "powerset_mapping": Powerset(3, 2).mapping.int().tolist(),
    }
    (args.out / "pyannote.json").write_text(json.dumps(facts, indent=1) + "\n",
                                            encoding="utf-8")
    print(f"wrote {len(outputs)} clips to {args.out}")


if __name__ == "__main__":
    main()
