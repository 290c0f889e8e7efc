"""The `seqkit data` subcommand."""

import argparse

import numpy as np

from seqkit.data import DATASETS, add_data_parser, cli_data, make_source


def test_data_cli_pathfinder_writes_cache(tmp_path, capsys):
    out = tmp_path / "pf"
    argv = ["pathfinder", "--preset", "pathfinder32", "--size", "20", "--out", str(out),
            "--contour-length", "6", "--seed", "3"]
    assert cli_data(argv) == 0
    captured = capsys.readouterr()
    assert "20/20 images" in captured.err and "images/s" in captured.err
    assert "wrote 20 pathfinder32 images" in captured.out
    src = make_source("pathfinder32", "train", data_dir=out, contour_length=6)
    fly = make_source("pathfinder32", "train", seed=3, contour_length=6, size=16)
    assert len(src) == 16
    np.testing.assert_array_equal(src[5]["inputs"], fly[5]["inputs"])
    # an existing cache is kept unless --overwrite
    assert cli_data(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_data([*argv, "--overwrite"]) == 0


def test_data_cli_registers_on_a_parser(capsys):
    parser = argparse.ArgumentParser(prog="seqkit")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "list"])
    assert args.func(args) == 0
    listed = capsys.readouterr().out
    for name in DATASETS:
        assert name in listed
    args = parser.parse_args(["data", "pathfinder", "--preset", "pathx", "--size", "0", "--out", "x"])
    assert args.func(args) == 2
    assert "--size" in capsys.readouterr().err
