"""The errors a user can fix. Every command-line entry point prints them as one line (``error: ...``) and exits
with status 2, without a traceback; anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """A mistake in flags, paths, data or the installed packages: the message says what, where and what is allowed."""


class MissingDependencyError(UserError, RuntimeError):
    """An optional package a feature needs is not installed; the message gives the command that installs it."""


class CheckpointError(UserError, ValueError):
    """A checkpoint (Hugging Face / GGUF weights, or an Orbax training step) is missing, incomplete, corrupt or does
    not match its config; the message names the file or step and the problem. One class for both kinds: a user
    fixes either by pointing at another checkpoint."""
