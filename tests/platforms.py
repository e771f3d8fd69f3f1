"""What the platform running the tests provides (tests skip, saying so, where it does not)."""

from __future__ import annotations

import platform
import sys

import pytest

# MLX is a dependency on Linux and Apple Silicon (pyproject.toml) and exists nowhere else.
MLX_PLATFORM = sys.platform == "linux" or (sys.platform, platform.machine()) == ("darwin", "arm64")
NO_MLX_REASON = f"MLX does not run on {sys.platform} {platform.machine()} (Linux, Apple Silicon)"
needs_mlx = pytest.mark.skipif(not MLX_PLATFORM, reason=NO_MLX_REASON)
