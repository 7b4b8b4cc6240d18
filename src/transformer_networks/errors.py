"""Exception types for mistakes a user can make (as opposed to bugs, which are `assert`s).

The command line turns any `UserError` into a one-line message and exit code 2, without a traceback.
"""


class UserError(Exception):
    """Base class for errors caused by the user's input: a bad config, a bad file, a bad flag."""


class InputError(UserError, ValueError):
    """A model was called with inputs it cannot take: too long a sequence, a mask of the wrong shape, a full cache."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid. The message names the field and what is allowed."""
