"""Whether decoded audio can be embedded: long enough and not too long, a rate a speech
front-end can use, not digital silence nor a constant (DC) level, finite samples, and the
warning for what is odd but usable (audio below the model's rate, a truncated file).

Refusals are InputAudioError; oddities are an InputAudioWarning, which the CLI prints as one
`audio: warning:` line per input.
"""

from __future__ import annotations

import warnings

import numpy as np

from engines.errors import InputAudioError

SILENCE_PEAK = 2.0**-15  # below one 16-bit step: digital silence
MIN_SOURCE_RATE = 4000  # Hz: below, the band holds no speech formants (narrow-band telephone
#                         speech is 8 kHz, its band 300-3400 Hz); such input is refused


class InputAudioWarning(UserWarning):
    """Input audio that is used but is odd: truncated, or below the model's sample rate."""


def warn(message: str) -> None:
    """Issue an InputAudioWarning (the CLI prints it as one `audio: warning:` line)."""
    warnings.warn(message, InputAudioWarning, stacklevel=2)


def check_finite(data: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite samples."""
    if not np.isfinite(data).all():
        raise InputAudioError(f"{name}: the audio holds non-finite samples (NaN or infinity)")


def check_rate(name: str, source_rate: int, target_rate: int) -> None:
    """Refuse rates under MIN_SOURCE_RATE; warn about audio below the model's rate:
    upsampling cannot bring back the high band."""
    if source_rate < MIN_SOURCE_RATE:
        raise InputAudioError(f"{name}: {source_rate} Hz audio is no speech signal; at least "
                              f"{MIN_SOURCE_RATE} Hz is needed")
    if source_rate < target_rate:
        warn(f"{name}: {source_rate} Hz audio upsampled to {target_rate} Hz; speaker vectors "
             "from narrow-band audio are less reliable")


def check_duration(name: str, duration: float, min_duration: float) -> None:
    """Refuse audio shorter than `min_duration` seconds."""
    if duration < min_duration:
        shown = f"{duration:.3f}" if round(duration, 3) < min_duration else f"{duration:.6f}"
        raise InputAudioError(
            f"{name}: too short ({shown} s); "
            f"at least {min_duration:g} s is needed (--min-duration)"
        )


def check_max_duration(name: str, duration: float, max_duration: float | None) -> None:
    """Refuse audio longer than `max_duration` seconds (None: no limit)."""
    if max_duration is not None and duration > max_duration:
        raise InputAudioError(f"{name}: too long ({duration:.2f} s); at most {max_duration:g} s "
                              "is accepted (--max-duration)")


def check_peak(name: str, peak: float, spread: float | None = None) -> None:
    """Refuse audio whose largest absolute sample is digital silence, or, given `spread`
    (largest minus smallest sample), audio without variation: a constant (DC) level."""
    if peak < SILENCE_PEAK:
        raise InputAudioError(f"{name}: the audio is digital silence")
    check_level(name, spread)


def check_level(name: str, spread: float | None) -> None:
    """Refuse audio whose samples all lie within one 16-bit step of each other (`spread`:
    largest minus smallest; None: not known), a constant (DC) level."""
    if spread is not None and spread < SILENCE_PEAK:
        raise InputAudioError(f"{name}: the audio is a constant level (no variation), "
                              "not a signal")
