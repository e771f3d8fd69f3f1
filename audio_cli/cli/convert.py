"""Model commands: `convert` (a PyTorch checkpoint to a model directory), `export-coreml` and
`quantize` (the int8 network `--precision int8` uses)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from audio_cli.cli import messages
from audio_cli.cli.options import ModelOpt, ThreadsOpt
from audio_cli.pipeline.options import default_model
from engines.errors import UsageError

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()


@app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="pyannote pytorch_model.bin, wespeaker .pt, 3D-Speaker "
        "campplus_cn_en_common.pt or an NVIDIA NeMo speaker model (.nemo)")],
    out_dir: Annotated[Path, typer.Argument(
        metavar="DIR", help="New directory for the hub-layout model.")],
) -> None:
    """Convert a PyTorch checkpoint or .nemo model into a model directory (no torch needed)."""
    from audio_cli.models.convert import convert_checkpoint

    written = convert_checkpoint(source, out_dir)
    typer.echo(str(written))


@app.command("export-coreml")
def export_coreml_command(
    out: Annotated[Path, typer.Argument(metavar="PATH", help="New .mlpackage path to write.")],
    model: ModelOpt = None,
    precision: Annotated[str, typer.Option(metavar="float32|float16|int8",
                                           help="Precision: float16 computes the feature maps in "
                                           "float16; int8 also stores convolution weights as "
                                           "8-bit integers.")] = "float32",
) -> None:
    """Export a model as a Core ML ML Program (.mlpackage) with a flexible length."""
    from audio_cli.pipeline.handle import open_model
    from engines.coreml_export import check_precision, export_coreml

    check_precision(precision)
    if out.exists() or out.is_symlink():  # a usage error, as for --output, before any work
        raise UsageError(f"{out} exists; not overwriting it")
    handle = open_model(model or default_model(), "coreml")
    config = handle.config
    if not config.model_id:
        config = dataclasses.replace(config, model_id=handle.source)
    written = export_coreml(config, handle.weights(), out, precision)
    typer.echo(str(written))


@app.command("quantize")
def quantize(
    model: ModelOpt = None,
    calibration: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Your own recordings (searched recursively) to set the int8 "
        "activation ranges with (default: eight LibriSpeech utterances shipped with audio)")
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Build a model's int8 network (onnx engine) and make it the one --precision int8 uses."""
    from audio_cli.pipeline.calibration import CALIBRATION_DIR
    from audio_cli.pipeline.handle import open_model
    from audio_cli.pipeline.speaker import SpeakerEmbedder

    handle = open_model(model or default_model(), "onnx")
    # the folder named even for the shipped set, so that a recorded choice is not reused
    speaker = SpeakerEmbedder(handle, "onnx", threads, "int8",
                              calibration_dir=calibration or CALIBRATION_DIR)
    engine = speaker.engine
    engine.record_int8_choice(engine.calibration if calibration is not None else None)
    source = calibration if calibration is not None else "the shipped LibriSpeech set"
    typer.echo(str(engine.model_path))
    messages.note(f"{handle.name} in int8, calibrated on {source}; --precision int8 uses it "
                  "from now on")
