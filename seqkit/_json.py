"""Reading the JSON files seqkit writes beside its runs and caches, leniently."""

import json
from typing import Any


def json_or_none(path: str) -> Any:
    """The JSON content of `path` (read as UTF-8), or `None` when the file is missing
    or unreadable; the caller decides what a missing file means."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
