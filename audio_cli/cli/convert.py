"""Model commands: `convert` (a PyTorch checkpoint to a model directory) and `export-coreml`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from audio_cli.cli.main import ModelOpt
from audio_cli.models.registry import DEFAULT_MODEL
from engines.errors import UsageError

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()


@app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="pyannote pytorch_model.bin, wespeaker .pt or 3D-Speaker "
        "campplus_cn_en_common.pt")],
    out_dir: Annotated[Path, typer.Argument(
        metavar="DIR", help="New directory for the hub-layout model.")],
) -> None:
    """Convert a PyTorch checkpoint into a model directory (no torch needed)."""
    from audio_cli.models.convert import convert_checkpoint

    written = convert_checkpoint(source, out_dir)
    typer.echo(str(written))


@app.command("export-coreml")
def export_coreml_command(
    out: Annotated[Path, typer.Argument(metavar="PATH", help="New .mlpackage path to write.")],
    model: ModelOpt = DEFAULT_MODEL,
    precision: Annotated[str, typer.Option(metavar="float32|float16",
                                           help="Weights' precision.")] = "float32",
) -> None:
    """Export a model as a Core ML ML Program (.mlpackage) with a flexible length."""
    from audio_cli.models.registry import resolve_model
    from engines.coreml_export import check_precision, export_coreml
    from engines.model import WEIGHTS_FILE, ModelConfig, Weights

    check_precision(precision)
    if out.exists() or out.is_symlink():  # a usage error, as for --output, before any work
        raise UsageError(f"{out} exists; not overwriting it")
    model_id, directory = resolve_model(model, "coreml")
    config = ModelConfig.load(directory)
    if not config.model_id:
        config = dataclasses.replace(config, model_id=model_id)
    written = export_coreml(config, Weights(directory / WEIGHTS_FILE), out, precision)
    typer.echo(str(written))
