"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared directory (fixtures, models, docs); skip the test if absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(
            "../shared not present (tests that need the shared fixtures only run on the "
            "project's machines)"
        )
    return SHARED_DIR
