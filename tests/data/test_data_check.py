"""`seqkit data check NAME --data-dir DIR` (and `check_dataset`): which files a dataset
reads, which are there, where the others go; exit 0 ready, 1 missing, 2 usage error."""

import os

import pytest
from test_data_cifar import _batches, _write_folder
from test_data_lra_release import write_level, write_listops_release

from seqkit import cli
from seqkit.data import (
    CHECKERS,
    DATASETS,
    ListOpsConfig,
    check_dataset,
    make_source,
    write_listops,
    write_pathfinder,
)

CIFAR_SIZE, IMDB_SIZE = 170_498_071, 84_125_825  # bytes of the standard downloads


def _archive(path, size: int, head: bytes = b"\x1f\x8b\x08"):
    """A sparse file of `size` bytes starting with `head` (a gzip header by default):
    an archive of the standard size without writing it."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


def _run(capsys, *argv):
    code = cli.main(["data", "check", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _rows(lines):
    """(status, path) of each file line; the last line is the summary."""
    return [tuple(line.split()[:2]) for line in lines[:-1]]


def test_data_check_every_dataset_has_a_checker():
    assert set(DATASETS) <= set(CHECKERS)


def test_data_check_generated_needs_nothing(capsys, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    for name in ("pathfinder32", "pathx", "listops"):
        code, lines, err = _run(capsys, name)
        assert (code, err) == (0, "")
        assert lines == [
            f"{name}: generated on the fly, no files needed (give a data directory to check a cache "
            f"or the LRA release files there)"
        ]


def test_data_check_listops_release(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "lra_release" / "listops-1000"
    write_listops_release(folder)
    monkeypatch.setenv("LRA_DIR", str(tmp_path))  # `$VAR` expanded where no shell does it
    code, lines, _ = _run(capsys, "listops", "--data-dir", "$LRA_DIR")
    assert code == 0
    assert _rows(lines) == [("ok", str(folder / f"basic_{s}.tsv")) for s in ("train", "val", "test")]
    assert lines[-1] == "listops: ready (all 3 there)"
    os.remove(folder / "basic_val.tsv")
    (folder / "basic_test.tsv").write_text("not a tsv\n")
    code, lines, _ = _run(capsys, "listops", "--data-dir", str(tmp_path))
    assert code == 1
    assert [r[0] for r in _rows(lines)] == ["ok", "missing", "bad"]  # a file that is there is not "missing"
    assert "without the header 'Source\\tTarget'" in lines[2]
    assert lines[-1].startswith(
        "listops: 1 of 3 missing, 1 of 3 bad: put or replace each as its line says; or write a cache with "
    )
    assert f"--out {tmp_path / 'listops'}" in lines[-1]


def test_data_check_says_where_files_go(tmp_path, capsys):
    code, lines, _ = _run(capsys, "listops", "--data-dir", str(tmp_path))
    assert code == 1
    release = tmp_path / "lra_release" / "listops-1000"
    assert _rows(lines) == [("missing", str(release / f"basic_{s}.tsv")) for s in ("train", "val", "test")]
    assert "lra_release.gz" in lines[0]
    code, lines, _ = _run(capsys, "pathx", "--data-dir", str(tmp_path), "--contour-length", "9")
    assert code == 1
    level = tmp_path / "lra_release" / "pathfinder128" / "curv_contour_length_9"
    assert _rows(lines) == [("missing", str(level / "metadata")), ("missing", str(level / "imgs"))]
    assert "128x128 grayscale PNGs" in lines[1]


def test_data_check_pathfinder_release(tmp_path, capsys):
    level = tmp_path / "lra_release" / "pathfinder32" / "curv_contour_length_14"
    write_level(level)
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path))
    assert code == 0
    assert _rows(lines) == [("ok", str(level / "metadata")), ("ok", str(level / "imgs"))]
    assert "2 label files, 20 rows (train 16, val 2, test 2)" in lines[0]
    assert lines[-1] == "pathfinder32: ready (all 2 there)"
    os.remove(level / "imgs" / "10" / "sample_7.png")
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path))
    assert code == 1
    assert _rows(lines) == [("ok", str(level / "metadata")), ("missing", str(level / "imgs"))]
    assert str(level / "imgs" / "10" / "sample_7.png") in lines[1]
    # a level that is not there
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path), "--contour-length", "6")
    assert code == 1 and "curv_baseline" in lines[0]


def test_data_check_caches(tmp_path, capsys):
    write_pathfinder(tmp_path / "pathfinder32", "pathfinder32", 6, contour_length=14)
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path))
    assert code == 0 and _rows(lines) == [("ok", str(tmp_path / "pathfinder32" / "metadata.json"))]
    cache = tmp_path / "pathfinder32"
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path), "--contour-length", "9")
    assert code == 1 and _rows(lines) == [("mismatch", str(cache / "metadata.json"))]
    assert "holds preset 'pathfinder32' at contour length 14" in lines[0]
    assert "not preset 'pathfinder32' at contour length 9" in lines[0]
    advice = f"seqkit data pathfinder --preset pathfinder32 --contour-length 9 --size N --out {cache}"
    assert f"{advice} --overwrite" in lines[0]
    # The style make_source would read (default lra) is checked too, not only the level.
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path), "--style", "continuous")
    assert code == 1 and "style 'lra' (generator version 2), not" in lines[0]
    assert "style 'continuous'" in lines[0]
    # and the command it suggests writes that style
    assert f"--preset pathfinder32 --style continuous --size N --out {cache} --overwrite" in lines[0]
    write_listops(tmp_path / "listops", 50)
    code, lines, _ = _run(capsys, "listops", "--data-dir", str(tmp_path))
    assert code == 0 and _rows(lines) == [("ok", str(tmp_path / "listops" / "metadata.json"))]


def test_data_check_listops_cache_of_another_configuration_is_not_ready(tmp_path, capsys):
    # make_source reads a cache of LRA's configuration, by this generator version only.
    write_listops(tmp_path / "listops", 50, config=ListOpsConfig(max_depth=4, min_length=20, max_length=400))
    code, lines, _ = _run(capsys, "listops", "--data-dir", str(tmp_path))
    assert code == 1 and _rows(lines) == [("mismatch", str(tmp_path / "listops" / "metadata.json"))]
    assert "was written with ListOpsConfig(max_depth=4" in lines[0]
    assert f"seqkit data listops --size N --out {tmp_path / 'listops'} --overwrite" in lines[0]
    with pytest.raises(ValueError, match="was written with ListOpsConfig"):
        make_source("listops", "train", data_dir=tmp_path)  # what the check foretold


def test_another_datasets_cache_in_the_data_directory_is_passed_over(tmp_path, capsys):
    """A Pathfinder-32 cache written into DIR itself neither hides DIR/pathx and
    DIR/listops caches nor makes their readers refuse DIR (and advise overwriting it)."""
    write_pathfinder(tmp_path, "pathfinder32", 6, contour_length=6, style="continuous")
    write_pathfinder(tmp_path / "pathx", "pathx", 6, contour_length=6, style="continuous")
    write_listops(tmp_path / "listops", 50)
    src = make_source("pathx", "train", data_dir=tmp_path, contour_length=6, style="continuous")
    assert src[0]["inputs"].shape == (128 * 128, 1)
    assert len(make_source("listops", "train", data_dir=tmp_path)) > 0
    code, lines, _ = _run(
        capsys, "pathx", "--data-dir", str(tmp_path), "--contour-length", "6", "--style", "continuous"
    )
    assert code == 0 and _rows(lines) == [("ok", str(tmp_path / "pathx" / "metadata.json"))]
    code, lines, _ = _run(capsys, "listops", "--data-dir", str(tmp_path))
    assert code == 0 and _rows(lines) == [("ok", str(tmp_path / "listops" / "metadata.json"))]


def test_data_check_cifar(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    archive, folder = tmp_path / "cifar-10-python.tar.gz", tmp_path / "cifar-10-batches-py"
    code, lines, _ = _run(capsys, "scifar", "--data-dir", str(tmp_path))
    assert code == 1
    assert _rows(lines) == [("missing", str(archive)), ("missing", str(folder))]
    assert lines[-1] == "scifar: missing: put one of the 2 above where shown"
    _archive(archive, CIFAR_SIZE)  # only its size and magic are checked here
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path))  # the default data directory
    code, lines, _ = _run(capsys, "cifar_gray")
    assert code == 0 and lines[-1] == f"cifar_gray: ready ({archive} is there)"
    # an incomplete extracted folder is read first (and refused): not ready
    data, labels = _batches()
    _write_folder(folder, data, labels, skip=("data_batch_3",))
    code, lines, _ = _run(capsys, "scifar")
    assert code == 1
    assert _rows(lines) == [("unused", str(archive)), ("missing", str(folder))]
    assert "lacks data_batch_3" in lines[1] and "incomplete folder" in lines[0]
    _write_folder(folder, data, labels)
    assert _run(capsys, "scifar")[0] == 0


def test_data_check_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    for argv, expected in [
        (["nosuch"], "unknown dataset 'nosuch'; expected one of ["),
        (
            ["listops", "--contour-length", "9"],
            "option(s) contour_length (--contour-length) do not apply to 'listops'; accepted: none",
        ),
        (
            ["pathfinder32", "--data-dir", str(tmp_path), "--contour-length", "7"],
            "expected --contour-length in (6, 9, 14), got 7",
        ),
        (["scifar"], "no CIFAR-10 data directory given"),
        (["imdb"], "no IMDb data directory given"),
    ]:
        code, lines, err = _run(capsys, *argv)
        assert (code, lines) == (2, [])
        assert err.startswith(f"seqkit data: error: {expected}") and err.count("\n") == 1, err


def test_data_check_pathfinder_unknown_style_or_level(tmp_path):
    """The Python API takes any style and level: an unknown one is refused as
    make_source refuses it, with or without a cache or the release there."""
    empty, release, cache = tmp_path / "empty", tmp_path / "release", tmp_path / "cache"
    empty.mkdir()
    write_level(os.path.join(release, "lra_release", "pathfinder32", "curv_contour_length_14"))
    write_pathfinder(cache, "pathfinder32", 6)
    for data_dir in (empty, release, cache):
        with pytest.raises(ValueError, match=r"^expected style in \('lra', 'continuous'\), got 'bogus'$"):
            check_dataset("pathfinder32", data_dir, style="bogus")
        with pytest.raises(ValueError, match=r"^expected contour_length in \(6, 9, 14\), got 7$"):
            check_dataset("pathfinder32", data_dir, contour_length=7)
        with pytest.raises(ValueError, match="got 'bogus'"):
            make_source("pathfinder32", "train", data_dir=data_dir, style="bogus")


def test_data_check_readers_of_other_modules(tmp_path, capsys):
    for name in ("imdb", "aan"):
        code, lines, _ = _run(capsys, name, "--data-dir", str(tmp_path))
        assert code == 1 and all(status == "missing" for status, _ in _rows(lines))
    report = check_dataset("aan", tmp_path)
    assert not report.complete and len(report.files) == 3


@pytest.mark.parametrize(
    "name, archive, size",
    [("scifar", "cifar-10-python.tar.gz", CIFAR_SIZE), ("imdb", "aclImdb_v1.tar.gz", IMDB_SIZE)],
)
def test_data_check_truncated_or_corrupt_archive_is_bad(tmp_path, capsys, name, archive, size):
    """An archive that is there but of another size, or not gzip, is `bad` with the
    reason (not `ready`, not `missing`); one of the standard size and magic is ok."""
    path = tmp_path / archive
    bad_summary = f"{name}: not ready: {path} is there but bad (see its line); replace it, or put another"
    _archive(path, 100_000)  # a download cut short
    code, lines, _ = _run(capsys, name, "--data-dir", str(tmp_path))
    assert code == 1 and _rows(lines)[0] == ("bad", str(path))
    assert f"expected {size:,} bytes (the standard archive), got 100,000" in lines[0]
    assert lines[0].endswith("download it again") and lines[-1].startswith(bad_summary)
    _archive(path, size, head=b"<html>")  # the size, but another file (an error page, say)
    code, lines, _ = _run(capsys, name, "--data-dir", str(tmp_path))
    assert code == 1 and _rows(lines)[0] == ("bad", str(path))
    assert "expected a gzip file (starting with 1f 8b), got one starting with 3c 68" in lines[0]
    _archive(path, size)
    code, lines, _ = _run(capsys, name, "--data-dir", str(tmp_path))
    assert code == 0 and _rows(lines)[0] == ("ok", str(path))
    assert lines[-1] == f"{name}: ready ({path} is there)"


def test_data_check_pathfinder_cache_of_another_level_in_dir(tmp_path, capsys):
    """A cache of this preset but another level and style in DIR itself: `mismatch`,
    and the one piece of advice given (write it again in DIR) makes DIR ready; no
    advice to write DIR/NAME, which the reader would never reach."""
    write_pathfinder(tmp_path, "pathfinder32", 6)  # contour length 14, lra
    wanted = ("--contour-length", "6", "--style", "continuous")
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path), *wanted)
    assert code == 1 and _rows(lines) == [("mismatch", str(tmp_path / "metadata.json"))]
    advice = "seqkit data pathfinder --preset pathfinder32 --contour-length 6 --style continuous --size N"
    assert f"{advice} --out {tmp_path} --overwrite" in lines[0]
    assert lines[-1].startswith(
        f"pathfinder32: not ready: {tmp_path} holds a cache written with other settings (mismatch above); "
        f"write it again as that line says (or into another directory, and give that one)"
    )
    assert "--out" not in lines[-1] and str(tmp_path / "pathfinder32") not in "\n".join(lines)
    # another directory, given as the data directory: ready
    other = tmp_path / "pathfinder32"
    write_pathfinder(other, "pathfinder32", 6, contour_length=6, style="continuous")
    assert _run(capsys, "pathfinder32", "--data-dir", str(other), *wanted)[0] == 0
    # or DIR written again as advised: ready
    write_pathfinder(tmp_path, "pathfinder32", 6, contour_length=6, style="continuous", overwrite=True)
    code, lines, _ = _run(capsys, "pathfinder32", "--data-dir", str(tmp_path), *wanted)
    assert code == 0 and _rows(lines) == [("ok", str(tmp_path / "metadata.json"))]


def test_data_check_without_data_dir_names_the_flag(capsys, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    for name in ("scifar", "imdb", "aan", "enwik8"):
        code, lines, err = _run(capsys, name)
        assert (code, lines) == (2, []) and err.count("\n") == 1
        assert "`--data-dir DIR` (seqkit data check)" in err and "data.data_dir" not in err, err
