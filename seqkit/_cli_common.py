"""What every `seqkit` subcommand shares: the one-line user error and what counts as
one. A module of its own, so the subcommands' modules and `seqkit.cli` share one
`_Usage` class also when the command runs as `python -m seqkit.cli` (then the
module `seqkit.cli` imported by a subcommand is not `__main__`)."""

import argparse


class _Usage(Exception):
    """A one-line user error: printed without a traceback, exit code 2."""


def _one_line(e: BaseException) -> str:
    """A user error as one line: an OS error names its file, others their first line."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or type(e).__name__}"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user can get wrong: recipe names, keys and values (`RecipeError`,
    and the `ValueError`s of data and model constructors at setup), missing or
    corrupt data and checkpoints, paths that cannot be read or written."""
    from seqkit.train import CheckpointError, RecipeError

    return (RecipeError, CheckpointError, ValueError, OSError)


def positive_int(text: str) -> int:
    """An argparse `type`: a positive integer, or argparse's one-line usage error."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return n
