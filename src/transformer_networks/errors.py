"""Exception types for mistakes a user can make (as opposed to bugs, which are `assert`s).

The command line turns any `UserError` into a one-line message and exit code 2, without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "InputError", "UserError", "read_json_object"]


class UserError(Exception):
    """Base class for errors caused by the user's input: a bad config, a bad file, a bad flag."""


class InputError(UserError, ValueError):
    """A model was called with inputs it cannot take: too long a sequence, a mask of the wrong shape, a full cache."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid. The message names the field and what is allowed."""


def read_json_object(path: Path, error: type[UserError] = UserError) -> dict[str, Any]:
    """The JSON object in `path`; an unreadable file or anything but an object is `error`, naming the file."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: unreadable: {e}") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object")
    return value
