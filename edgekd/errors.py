"""User-facing errors: the CLI prints their message (no traceback) and exits with status 2."""


class EdgeKDError(Exception):
    """A user mistake or bad input; the message names the file, line, field or option at fault."""
