"""Index checking shared by the random-access sources."""


def check_index(i, n: int) -> int:
    """`i` as a Python int, or IndexError when it is outside `0 <= i < n`."""
    i = int(i)
    if not 0 <= i < n:
        raise IndexError(f"index {i} out of range for a source of {n} examples")
    return i
