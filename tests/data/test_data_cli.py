"""The `seqkit data` subcommand (part of `seqkit.cli`)."""

import io

import numpy as np
import pytest

from seqkit import cli
from seqkit._cli_data import _Progress
from seqkit.data import DATASETS, DataError, ListOpsCacheSource, PathfinderCacheSource, make_source


def test_data_cli_pathfinder_writes_cache(tmp_path, capsys):
    out = tmp_path / "pf"
    argv = [
        "data",
        "pathfinder",
        "--preset",
        "pathfinder32",
        "--size",
        "20",
        "--out",
        str(out),
        "--contour-length",
        "6",
        "--seed",
        "3",
    ]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "20/20 images" in captured.err and "images/s" in captured.err
    assert "wrote 20 pathfinder32 images" in captured.out
    src = make_source("pathfinder32", "train", data_dir=out, contour_length=6)
    fly = make_source("pathfinder32", "train", seed=3, contour_length=6, size=16)
    assert len(src) == 16
    np.testing.assert_array_equal(src[5]["inputs"], fly[5]["inputs"])
    # an existing cache is kept unless --overwrite
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite"]) == 0


def test_data_cli_lists_and_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["data", "list"]) == 0
    listed = capsys.readouterr().out
    for name in DATASETS:
        assert name in listed
    out = str(tmp_path / "x")
    assert cli.main(["data", "pathfinder", "--preset", "pathx", "--size", "0", "--out", out]) == 2
    # every split of 80/10/10 needs an image: 6 is the least size (round(0.6) = 1)
    assert "expected size >= 6" in capsys.readouterr().err
    # A level the generator does not have: one line naming the accepted ones.
    assert cli.main(["data", "pathfinder", "--size", "4", "--contour-length", "7", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqkit data: error: expected --contour-length in (6, 9, 14), got 7")
    assert err.count("\n") == 1


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_data_cli_never_writes_one_cache_over_another_kind(tmp_path, capsys):
    # The Pathfinder and ListOps caches share file names (metadata.json,
    # {split}_labels.npy): one written over the other would destroy it, so that is
    # refused with or without --overwrite, and no advice says to overwrite.
    pf, lo = tmp_path / "pf", tmp_path / "lo"
    assert cli.main(["data", "pathfinder", "--size", "12", "--out", str(pf)]) == 0
    assert cli.main(["data", "listops", "--size", "40", "--out", str(lo)]) == 0
    capsys.readouterr()
    before = {d: _files(d) for d in (pf, lo)}
    for argv, here in (
        (["data", "listops", "--size", "40", "--out", str(pf)], pf),
        (["data", "pathfinder", "--size", "12", "--out", str(lo)], lo),
    ):
        for extra in ([], ["--overwrite"]):
            assert cli.main([*argv, *extra]) == 2
            err = capsys.readouterr().err
            kind = "pathfinder" if here == pf else "listops"
            assert f"{here} holds a {kind} cache" in err and "choose another directory" in err, err
            assert "--overwrite" not in err and err.count("\n") == 1
    assert {d: _files(d) for d in (pf, lo)} == before  # both caches untouched
    # Reading one as the other says what it is, without advice to overwrite it.
    cases = ((ListOpsCacheSource, pf, "pathfinder"), (PathfinderCacheSource, lo, "listops"))
    for reader, directory, kind in cases:
        with pytest.raises(DataError, match=f"holds a {kind} cache") as e:
            reader(directory, "train")
        assert "--overwrite" not in str(e.value)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_data_cli_progress_redraws_only_on_a_terminal(tmp_path, capsys):
    """On a terminal the progress line is redrawn with `\\r`; in a log or pipe it is
    whole lines: the first, at most one per `every` seconds, and the last."""
    log = io.StringIO()
    progress = _Progress("pathx", stream=log)
    for done in range(1, 101):
        progress(done, 100)
    progress.end()
    lines = log.getvalue().split("\n")
    assert "\r" not in log.getvalue() and lines[-1] == "" and len(lines) == 3
    assert lines[0].startswith("pathx: 1/100 images") and lines[1].startswith("pathx: 100/100 images")
    every = _Progress("pathx", stream=io.StringIO(), every=0.0)
    for done in range(1, 4):
        every(done, 3)
    assert every.stream.getvalue().count("\n") == 3
    terminal = _Terminal()
    progress = _Progress("pathx", stream=terminal)
    for done in range(1, 4):
        progress(done, 3)
    progress.end()
    assert terminal.getvalue().count("\r") == 3 and terminal.getvalue().endswith(" s\n")
    # the command itself, its stderr not a terminal (captured): whole lines
    assert cli.main(["data", "listops", "--size", "40", "--out", str(tmp_path / "lo")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.startswith("listops: ") and "40/40 examples" in err
