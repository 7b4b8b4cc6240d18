"""Where the shared test data lives: $TN_DATA_DIR, else ../shared/data beside the project. Tests that need a file
skip cleanly when it is absent (users and fresh clones elsewhere do not have it)."""

import os
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("TN_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent")
    return path
