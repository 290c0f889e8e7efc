"""Paths a user types: one expansion rule for every path setting and argument."""

import os


def expand_path(path: str | os.PathLike) -> str:
    """`path` with `~` and environment variables (`$HOME`, `${SEQKIT_DATA}`) expanded.

    The shell expands `--out ~/runs`, but not `--set data.data_dir=~/data` nor a
    path written in Python or in a config file; every path seqkit takes goes
    through here, so all of them behave like the shell's.
    """
    return os.path.expanduser(os.path.expandvars(os.fspath(path)))
