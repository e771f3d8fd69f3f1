"""The known models, and finding any model's directory: a known name, a hub id or a local folder.

`KNOWN_MODELS` is the one table of the models this tool knows by name: where each comes
from, the network it runs, its default decision threshold and the engines that run it.
`resolve_model` turns what a user typed into (model id, directory in the hub layout:
`config.json` + `model.safetensors`), downloading on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engines import ENGINE_NAMES, resolve_engine_name
from engines.errors import ModelError
from engines.model import (
    CAMPPLUS_MODEL_TYPE,
    COMPILED_SUFFIX,
    CONFIG_FILE,
    NEMO_MODEL_TYPE,
    RESNET_MODEL_TYPE,
    WEIGHTS_FILE,
    compiled_models,
    network_family,
)

ALL_ENGINES = tuple(name for name in ENGINE_NAMES if name != "auto")


@dataclass(frozen=True)
class KnownModel:
    """A model users can name: where it comes from and how it is used."""

    name: str  # the short name users may type
    source: str  # a Hugging Face hub repo id, or "modelscope" (fetched by models/campplus.py)
    model_type: str  # the network (engines.model: RESNET_MODEL_TYPE, CAMPPLUS_MODEL_TYPE)
    threshold: float  # default same-speaker decision threshold on the raw cosine
    engines: tuple[str, ...] = ALL_ENGINES
    nemo_file: str = ""  # a NeMo model: the `.nemo` file in the hub repo `source`


# Where each default threshold comes from (also in docs/store.md, Scores and thresholds):
# - WeSpeaker ResNet34-LM: 0.5. No published value was found (WeSpeaker publishes EERs, not
#   thresholds) and its real weights cannot be downloaded on the project's machines, so the
#   value is a round number, NOT measured for this model: calibrate it (`audio calibrate`)
#   or pass --threshold.
# - CAM++ (3D-Speaker): 0.5. No official value exists; a 3D-Speaker maintainer answered that
#   the threshold depends on the test set and, if one number must be set, to use about 0.5
#   (github.com/modelscope/3D-Speaker/issues/135). docs/store.md gives the equal-error
#   threshold measured on LibriSpeech test-other.
# - NeMo TitaNet-L: 0.7, the default of NeMo's own EncDecSpeakerLabelModel.verify_speakers.
KNOWN_MODELS = (
    KnownModel("wespeaker-resnet34-lm", "aufklarer/WeSpeaker-ResNet34-LM-MLX",
               RESNET_MODEL_TYPE, 0.5),
    # Only a compiled Core ML model (fixed input lengths): macOS, --engine coreml.
    KnownModel("wespeaker-resnet34-lm-coreml", "aufklarer/WeSpeaker-ResNet34-LM-CoreML",
               RESNET_MODEL_TYPE, 0.5, engines=("coreml",)),
    KnownModel("campplus", "modelscope", CAMPPLUS_MODEL_TYPE, 0.5),
    KnownModel("titanet-large", "nvidia/speakerverification_en_titanet_large", NEMO_MODEL_TYPE,
               0.7, nemo_file="speakerverification_en_titanet_large.nemo"),
)
DEFAULT_MODEL = KNOWN_MODELS[0].source
# What a download fetches: weights, or a compiled Core ML model (a Core ML-only repo such as
# aufklarer/WeSpeaker-ResNet34-LM-CoreML holds `wespeaker.mlmodelc/` and no weights).
HUB_FILES = [WEIGHTS_FILE, CONFIG_FILE, "*.md", "LICENSE*", f"*{COMPILED_SUFFIX}/*"]
LOCAL_HINT = (
    "pass a local model directory with --model DIR "
    "(make one from a pyannote/wespeaker checkpoint with `audio convert`)"
)


def known_model(name: str) -> KnownModel | None:
    """The known model with this short name or hub id (any case), else None."""
    lowered = name.lower()
    for model in KNOWN_MODELS:
        if lowered in (model.name, model.source.lower()):
            return model
    return None


def display_name(typed: str) -> str:
    """What every message calls a model: the short name of a known model (by name or hub
    id), else what the user typed."""
    known = known_model(typed)
    return known.name if known is not None else typed


def _check_engine(model: str, known: KnownModel | None, engine: str) -> None:
    """ModelError if `model` is the known model `known` and `engine` cannot run it."""
    engine = resolve_engine_name(engine)
    if known is not None and engine not in known.engines:
        raise ModelError(f"{model} runs only with --engine {' or '.join(known.engines)} "
                         f"(not {engine})")


def default_threshold(model_type: str) -> float:
    """The default decision threshold of a network (the known models of its family agree)."""
    family = network_family(model_type)
    return next(m.threshold for m in KNOWN_MODELS if m.model_type == family)


def check_model_dir(directory: Path) -> Path:
    """Return the directory if it holds a config and weights in the hub layout.

    A config beside a compiled Core ML model (`*.mlmodelc`) without weights is accepted too;
    only the coreml engine on macOS can run it (engines.create_engine says so otherwise).
    """
    if not directory.is_dir():
        raise ModelError(f"{directory}: no such model directory")
    required = (CONFIG_FILE,) if compiled_models(directory) else (CONFIG_FILE, WEIGHTS_FILE)
    missing = [f for f in required if not (directory / f).is_file()]
    if missing:
        raise ModelError(f"{directory}: not a model directory (missing {', '.join(missing)})")
    return directory


def _is_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "~"))


def download_from_hub(repo_id: str, files: list[str] | None = None, hint: str = LOCAL_HINT
                      ) -> Path:
    """Fetch (or reuse from huggingface_hub's cache) the `files` patterns (default: HUB_FILES)
    of a model repo; progress goes to stderr. Errors end with `hint`, the way out."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelError(f"huggingface_hub is needed to download {repo_id} ({exc})") from None
    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=files or HUB_FILES))
    except RepositoryNotFoundError:
        raise ModelError(f"{repo_id}: no such model on the Hugging Face hub; {hint}") from None
    except GatedRepoError:
        raise ModelError(f"{repo_id}: the model is gated; log in with `hf auth login`") from None
    except LocalEntryNotFoundError:
        raise ModelError(
            f"{repo_id}: not in the local cache and the hub cannot be reached "
            f"(offline or HF_HUB_OFFLINE=1); {hint}"
        ) from None
    except (OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{repo_id}: download failed ({detail}); {hint}") from None


def resolve_model(model: str, engine: str | None = None) -> tuple[str, Path]:
    """Return (model id, directory in the hub layout) for a name, hub id or local directory.

    With `engine`, a known model that engine cannot run is refused before any download.

    A local directory holding 3D-Speaker's original CAM++ checkpoint and no `config.json` is
    verified and converted into the user cache (models/campplus.py), and so is `campplus`;
    a `.nemo` file, and a known NeMo model once downloaded, likewise (models/nemo.py).
    """
    known = known_model(model)
    if engine is not None:
        _check_engine(model, known, engine)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".nemo":
        from audio_cli.models import nemo

        return str(path), nemo.model_dir_from_nemo(path)
    if known is not None and known.nemo_file:
        from audio_cli.models import nemo

        return known.name, nemo.resolve_hub_nemo(known.source, known.nemo_file)
    if path.is_dir():
        if not (path / CONFIG_FILE).exists():
            from audio_cli.models import campplus

            checkpoint = path / campplus.CHECKPOINT_FILE
            if checkpoint.is_file():
                return str(path), campplus.model_dir_from_checkpoint(checkpoint)
        return str(path), check_model_dir(path)
    if known is not None and known.source == "modelscope":
        from audio_cli.models import campplus

        return known.name, campplus.resolve_campplus()
    repo_id = known.source if known is not None else model
    if path.exists() or not _is_hub_id(repo_id):
        names = ", ".join(m.name for m in KNOWN_MODELS)
        raise ModelError(
            f"unknown model {model!r}: not a directory, not a hub id (owner/name), "
            f"not a known name ({names})"
        )
    return repo_id, check_model_dir(download_from_hub(repo_id))
