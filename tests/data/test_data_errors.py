"""Bad data files and paths: one-line errors naming the file, raised before anything is written.

Truncated or corrupt CIFAR-10 archives and batches, corrupt Pathfinder caches,
`~`/`$VAR` in paths, too small or unwritable `seqkit data pathfinder` targets, and
advice in messages that the command line accepts when followed.
"""

import json
import os
import re
import shutil
import tarfile

import numpy as np
import pytest
from test_data_cifar import N_BATCH, N_TEST, _batches, _write_folder

from seqkit import cli, recipes
from seqkit.data import (
    DataError,
    DataNotFoundError,
    PathfinderCacheNotFoundError,
    make_source,
    write_listops,
    write_pathfinder,
)
from seqkit.train import override

ARCHIVE = "cifar-10-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _one_error_line(err: str) -> str:
    """The CLI's stderr must be exactly one line starting with `seqkit`."""
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    assert err.startswith("seqkit"), repr(err)
    return err.rstrip("\n")


def _listing(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _archive(directory) -> bytes:
    """Write a small CIFAR-10 python archive (the real layout) into `directory`; return its bytes."""
    data, labels = _batches()
    staging = directory.parent / f"{directory.name}-staging"
    _write_folder(staging / "cifar-10-batches-py", data, labels)
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(directory / ARCHIVE, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shutil.rmtree(staging)
    return (directory / ARCHIVE).read_bytes()


def _train_argv(recipe, data_dir, out, preset="smoke"):
    return ["train", recipe, "--preset", preset, "--set", f"data.data_dir={data_dir}", "--out", str(out)]


# -- CIFAR-10 ----------------------------------------------------------------------


def _damage(raw: bytes, how: str) -> bytes:
    if how == "garbage":
        return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if how == "empty":
        return b""
    if how == "flipped":  # one corrupt byte in the middle: only gzip's CRC notices
        b = bytearray(raw)
        b[len(b) // 2] ^= 0xFF
        return bytes(b)
    return raw[: int(how)] if int(how) >= 0 else raw[: len(raw) + int(how)]


@pytest.mark.parametrize("how", ["garbage", "empty", "flipped", "10", "1000", "-20000", "-20", "-4"])
def test_data_errors_bad_cifar_archive(tmp_path, how):
    good = _archive(tmp_path / "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / ARCHIVE).write_bytes(_damage(good, how))
    with pytest.raises(DataError) as e:
        make_source("scifar", "train", data_dir=bad)  # at construction, not on first item
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{bad / ARCHIVE} is not a readable gzip tar archive (truncated or corrupt?): ")
    assert f"expected the CIFAR-10 python archive ({URL}); download it again" in msg
    assert _listing(bad) == [ARCHIVE]  # nothing extracted or cached next to it
    # the undamaged archive reads
    assert len(make_source("scifar", "val", data_dir=tmp_path / "good")) == N_BATCH // 2


def test_data_errors_archive_without_batches(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme").write_text("not CIFAR")
    with tarfile.open(tmp_path / ARCHIVE, "w:gz") as tar:
        tar.add(tmp_path / "other", arcname="other")
    with pytest.raises(DataNotFoundError) as e:
        make_source("cifar_gray", "test", data_dir=tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / ARCHIVE} lacks cifar-10-batches-py/data_batch_1, ")
    assert "cifar-10-batches-py/test_batch" in msg and URL in msg


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "not-a-batch", "bad-labels"])
def test_data_errors_bad_cifar_batch_file(tmp_path, how):
    data, labels = _batches()
    folder = tmp_path / "cifar-10-batches-py"
    _write_folder(folder, data, labels)
    bad = folder / "data_batch_3"
    raw = bad.read_bytes()
    if how == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        bad.write_bytes(b"")
    elif how == "garbage":
        bad.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    elif how == "not-a-batch":
        import pickle

        bad.write_bytes(pickle.dumps({"data": 1}))
    else:
        import pickle

        batch = {b"data": data["data_batch_3"], b"labels": [12] * N_BATCH}
        bad.write_bytes(pickle.dumps(batch))
    before = _listing(tmp_path)
    with pytest.raises(DataError) as e:
        make_source("scifar", "test", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}")
    if how == "bad-labels":
        assert "expected labels in 0..9, got 12..12" in msg
    else:
        assert "expected a pickled dict with b'data' (n, 3072) uint8 and b'labels'" in msg
    if how in ("truncated", "empty", "garbage"):
        assert "is not a readable CIFAR-10 python batch (truncated or corrupt?)" in msg
    assert f"extract {ARCHIVE} ({URL}) again" in msg
    assert _listing(tmp_path) == before


def test_data_errors_cli_train_names_the_bad_file(tmp_path, capsys):
    good = _archive(tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ARCHIVE).write_bytes(good[: len(good) // 2])
    run = tmp_path / "run"
    assert cli.main(_train_argv("s4-scifar", tmp_path / "bad", run)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"seqkit: error: {tmp_path / 'bad' / ARCHIVE} is not a readable gzip tar archive")
    assert "EOFError" in line and "download it again" in line
    assert not run.exists()  # nothing written before the data was read


def test_data_errors_missing_data_dir_advice_is_accepted(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as e:
        make_source("scifar", "train")
    msg = str(e.value)
    assert "--data-dir" not in msg  # `seqkit train` has no such option
    sets = re.findall(r"`--set (\S+=DIR)`", msg)
    envs = re.findall(r"environment variable (SEQKIT_DATA)=DIR", msg)
    assert sets == ["data.data_dir=DIR"] and envs == ["SEQKIT_DATA"], msg
    data_dir = tmp_path / "cifar"
    _archive(data_dir)
    # The suggested --set key parses and makes the recipe find the archive...
    recipe = override(recipes.get("s4-scifar"), [sets[0].replace("DIR", str(data_dir))])
    sources = recipe.make_sources()
    assert [len(sources[s]) for s in ("train", "val", "test")] == [
        5 * N_BATCH - N_BATCH // 2,
        N_BATCH // 2,
        N_TEST,
    ]
    # ... and so does the suggested environment variable.
    monkeypatch.setenv(envs[0], str(data_dir))
    assert len(recipes.get("s4-scifar").make_sources()["test"]) == N_TEST
    # `seqkit train` takes the same --set: with a damaged archive there, the error is
    # about the archive, so the option was accepted and the directory used.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ARCHIVE).write_bytes(b"not gzip")
    argv = [
        "train",
        "s4-scifar",
        "--set",
        sets[0].replace("DIR", str(tmp_path / "bad")),
        "--out",
        str(tmp_path / "r"),
    ]
    assert cli.main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'bad' / ARCHIVE} is not a readable gzip tar archive" in line


def test_data_errors_paths_expand_home_and_variables(tmp_path, monkeypatch):
    home = tmp_path / "home"
    data_dir = home / "data"
    _archive(data_dir)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MY_DATA_ROOT", str(home))
    monkeypatch.chdir(tmp_path)
    n_val = N_BATCH // 2
    assert len(make_source("scifar", "val", data_dir="~/data")) == n_val
    assert len(make_source("scifar", "val", data_dir="$HOME/data")) == n_val
    assert len(make_source("cifar_gray", "val", data_dir="${MY_DATA_ROOT}/data")) == n_val
    monkeypatch.setenv("SEQKIT_DATA", "~/data")
    assert len(make_source("scifar", "val")) == n_val
    # Pathfinder caches: written to and read from expanded directories.
    meta = write_pathfinder("~/pf", "pathfinder32", 6, contour_length=6)
    assert meta["splits"] == {"train": 4, "val": 1, "test": 1}
    assert (home / "pf" / "metadata.json").is_file()
    assert len(make_source("pathfinder32", "train", data_dir="$MY_DATA_ROOT/pf", contour_length=6)) == 4
    assert cli.main(["data", "pathfinder", "--size", "6", "--contour-length", "6", "--out", "~/pf2"]) == 0
    assert len(make_source("pathfinder32", "test", data_dir="~/pf2", contour_length=6)) == 1
    # no directory named "~" or "$MY_DATA_ROOT" appeared in the working directory
    assert sorted(os.listdir(tmp_path)) == ["home"]


# -- seqkit data pathfinder: sizes and targets ------------------------------------------


@pytest.mark.parametrize("size", [0, 2, 5])
def test_data_errors_pathfinder_size_too_small(tmp_path, capsys, size):
    out = tmp_path / "out" / "pf"
    with pytest.raises(ValueError) as e:
        write_pathfinder(out, "pathfinder32", size)
    msg = str(e.value)
    assert msg.startswith("expected size >= 6 so that every split (train 0.8, val 0.1, test 0.1) ")
    assert f"gets at least one image, got {size} " in msg and "would be empty" in msg
    assert not (tmp_path / "out").exists()
    assert cli.main(["data", "pathfinder", "--size", str(size), "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"seqkit data: error: {msg}"
    assert os.listdir(tmp_path) == []


def test_data_errors_pathfinder_least_size_and_other_fractions(tmp_path):
    # 6 is the least size for 80/10/10: round(0.6) = 1 image in val and in test
    meta = write_pathfinder(tmp_path / "six", "pathfinder32", 6, contour_length=6)
    assert meta["splits"] == {"train": 4, "val": 1, "test": 1}
    assert _listing(tmp_path / "six") == sorted(
        ["metadata.json"] + [f"{s}_{k}.npy" for s in ("train", "val", "test") for k in ("images", "labels")]
    )
    # a split given no fraction may stay empty; the others still need an image
    meta = write_pathfinder(tmp_path / "all", "pathfinder32", 1, contour_length=6, splits=(1.0, 0.0, 0.0))
    assert meta["splits"] == {"train": 1, "val": 0, "test": 0}
    assert len(make_source("pathfinder32", "val", data_dir=tmp_path / "all", contour_length=6)) == 0
    # 5% of 10 rounds to 0 (half to even), of 11 to 1
    uneven = (0.95, 0.05, 0.0)
    with pytest.raises(
        ValueError, match=r"expected size >= 11 .*got 10 \(train 10, val 0, test 0: val would"
    ):
        write_pathfinder(tmp_path / "x", "pathfinder32", 10, splits=uneven)
    assert not (tmp_path / "x").exists()
    meta = write_pathfinder(tmp_path / "x", "pathfinder32", 11, contour_length=6, splits=uneven)
    assert meta["splits"] == {"train": 10, "val": 1, "test": 0}


def test_data_errors_pathfinder_out_not_writable(tmp_path, capsys):
    # Running as root, chmod does not stop writes: a path under a regular file does.
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out, expected in [
        (afile / "sub", f"got {afile / 'sub'}, which is under the file {afile}"),
        (afile / "sub" / "deeper", f"got {afile / 'sub' / 'deeper'}, which is under the file {afile}"),
        (afile, f"got the file {afile}"),
    ]:
        with pytest.raises(NotADirectoryError, match=re.escape(expected)):
            write_pathfinder(out, "pathfinder32", 6)
        assert cli.main(["data", "pathfinder", "--size", "6", "--out", str(out)]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert line == f"seqkit data: error: expected a directory for the Pathfinder cache, {expected}"
        assert os.listdir(tmp_path) == ["afile"] and afile.read_text() == "keep me"


def test_data_errors_pathfinder_cli_reports_os_errors(tmp_path, capsys, monkeypatch):
    # An OSError with a file name (here from creating the directory) is one line naming the path.
    out = tmp_path / "new" / "pf"

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    monkeypatch.setattr(os, "makedirs", refuse)
    assert cli.main(["data", "pathfinder", "--size", "6", "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"seqkit data: error: cannot write the cache to {out}: Permission denied"
    assert os.listdir(tmp_path) == []


class _Interrupt(Exception):
    pass


def _stop_after_first_chunk(done, total):
    raise _Interrupt(f"stopped at {done}/{total}")


def test_data_errors_pathfinder_failure_leaves_nothing(tmp_path):
    out = tmp_path / "a" / "b" / "pf"
    with pytest.raises(_Interrupt):
        write_pathfinder(out, "pathfinder32", 12, contour_length=6, chunk=4, progress=_stop_after_first_chunk)
    assert os.listdir(tmp_path) == []  # temporaries and the directories it created are gone
    # A cache that was there stays readable and unchanged when rewriting it fails.
    old = tmp_path / "old"
    write_pathfinder(old, "pathfinder32", 6, contour_length=6, seed=1)
    files = _listing(old)
    first = make_source("pathfinder32", "train", data_dir=old, contour_length=6)[0]["inputs"]
    (old / "notes.txt").write_text("mine")
    with pytest.raises(_Interrupt):
        write_pathfinder(
            old,
            "pathfinder32",
            12,
            contour_length=6,
            seed=2,
            chunk=4,
            progress=_stop_after_first_chunk,
            overwrite=True,
        )
    assert _listing(old) == sorted([*files, "notes.txt"])
    src = make_source("pathfinder32", "train", data_dir=old, contour_length=6)
    assert len(src) == 4 and src.metadata["seed"] == 1
    np.testing.assert_array_equal(src[0]["inputs"], first)


# -- Pathfinder caches: corrupt files --------------------------------------------------


def _corrupt(cache, how):
    """Damage one file of a cache; return its path."""
    if how == "metadata-garbage":
        path = cache / "metadata.json"
        path.write_bytes(b"\x00{garbage")
    elif how == "metadata-truncated":
        path = cache / "metadata.json"
        path.write_bytes(path.read_bytes()[:100])
    elif how == "metadata-list":
        path = cache / "metadata.json"
        path.write_text("[1, 2]")
    elif how == "metadata-keys":
        path = cache / "metadata.json"
        meta = json.loads(path.read_text())
        del meta["splits"]
        path.write_text(json.dumps(meta))
    elif how == "images-truncated":
        path = cache / "train_images.npy"
        path.write_bytes(path.read_bytes()[:-7])
    elif how == "images-garbage":
        path = cache / "train_images.npy"
        path.write_bytes(np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif how == "labels-empty":
        path = cache / "train_labels.npy"
        path.write_bytes(b"")
    elif how == "labels-shape":
        path = cache / "train_labels.npy"
        np.save(path, np.zeros(3, np.uint8))
    return path


@pytest.mark.parametrize(
    "how, expected",
    [
        ("metadata-garbage", " is not readable JSON (truncated or corrupt?): JSONDecodeError"),
        ("metadata-truncated", " is not readable JSON (truncated or corrupt?): JSONDecodeError"),
        ("metadata-list", ": expected a JSON object with 'preset'"),
        ("metadata-keys", ": expected a JSON object with 'preset'"),
        ("images-truncated", " is not a readable .npy array (truncated or corrupt?): ValueError"),
        ("images-garbage", " is not a readable .npy array (truncated or corrupt?): ValueError"),
        ("labels-empty", " is not a readable .npy array (truncated or corrupt?): ValueError"),
        (
            "labels-shape",
            ": expected a (4,) uint8 array (metadata.json says 4 train images of 32x32), got (3,)",
        ),
    ],
)
def test_data_errors_corrupt_pathfinder_cache(tmp_path, capsys, how, expected):
    cache = tmp_path / "pathfinder32"
    write_pathfinder(cache, "pathfinder32", 6, contour_length=6)
    path = _corrupt(cache, how)
    before = _listing(tmp_path)
    with pytest.raises(DataError) as e:
        make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6)  # at construction
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}{expected}")
    if how.startswith("metadata"):
        assert "expected" in msg
    # The advice is a command `seqkit data` accepts, and it repairs the cache.
    (advice,) = re.findall(r"write the cache again with `seqkit (data pathfinder [^`]*)`", msg)
    unreadable = how in ("metadata-garbage", "metadata-truncated", "metadata-list")
    preset = "PRESET" if unreadable else "pathfinder32"
    level = " --contour-length 6" if preset != "PRESET" else ""
    assert advice == f"data pathfinder --preset {preset}{level} --size N --out {cache} --overwrite"
    assert _listing(tmp_path) == before
    argv = advice.replace("PRESET", "pathfinder32").replace("--size N", "--size 6").split()
    if preset == "PRESET":
        argv += ["--contour-length", "6"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert len(make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6)) == 4


def test_data_errors_cli_train_on_corrupt_cache(tmp_path, capsys):
    cache = tmp_path / "pathfinder32"
    write_pathfinder(cache, "pathfinder32", 6)
    path = _corrupt(cache, "images-truncated")
    run = tmp_path / "run"
    assert cli.main(_train_argv("s4-pathfinder", tmp_path, run)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"seqkit: error: {path} is not a readable .npy array (truncated or corrupt?)")
    assert not run.exists()


def test_data_errors_missing_cache_advice_runs(tmp_path, capsys):
    with pytest.raises(PathfinderCacheNotFoundError) as e:
        make_source("pathfinder32", "val", data_dir=tmp_path, contour_length=9)
    msg = str(e.value)
    (command,) = re.findall(r"write one with `seqkit (data pathfinder [^`]*)`", msg)
    out = tmp_path / "pathfinder32"
    assert command == f"data pathfinder --preset pathfinder32 --contour-length 9 --size N --out {out}"
    assert cli.main(command.replace("--size N", "--size 6").split()) == 0
    capsys.readouterr()
    assert len(make_source("pathfinder32", "val", data_dir=tmp_path, contour_length=9)) == 1
    # the other way out: no data directory, `--set data.data_dir=none`
    (setting,) = re.findall(r"`--set (data\.data_dir=none)`", msg)
    recipe = override(recipes.get("s4-pathfinder", "smoke"), [f"data.data_dir={tmp_path}", setting])
    assert recipe.data.data_dir is None


def test_data_errors_cache_too_small_names_the_setting(tmp_path):
    """A split larger than the cache's names the setting to lower and the other
    fix; a cache of another level or style is refused first, whatever the sizes."""
    pf, lo = tmp_path / "pf", tmp_path / "lo"
    write_pathfinder(pf, "pathfinder32", 10)  # contour length 14, lra: train 8
    with pytest.raises(ValueError, match="holds preset 'pathfinder32' at contour length 14") as e:
        make_source("pathfinder32", "train", data_dir=pf, size=8000, contour_length=6, style="continuous")
    assert "size" not in str(e.value).split(";")[0]
    expected = (
        "expected 0 <= size <= 8 (the cached train split), got 8000: lower data.train_size (seqkit train) or "
        "size (make_source) to at most 8, or write a larger cache (a larger --size)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        make_source("pathfinder32", "train", data_dir=pf, size=8000)
    write_listops(lo, 100)  # val 2
    with pytest.raises(ValueError, match=r"got 8: lower data\.val_size \(seqkit train\) .* most 2, or write"):
        make_source("listops", "val", data_dir=lo, size=8)
    data, labels = _batches()
    _write_folder(tmp_path / "cifar" / "cifar-10-batches-py", data, labels)
    with pytest.raises(ValueError, match=rf"got {10**6}: lower data\.test_size \(seqkit train\)"):
        make_source("scifar", "test", data_dir=tmp_path / "cifar", size=10**6)


def test_data_errors_split_size_bounds(tmp_path):
    """Every source's size check: None reads the whole split, 0 an empty one, and a
    size outside [0, available] is refused with both bounds (a negative one too, for
    sources built directly rather than through `make_source`)."""
    from seqkit.data._files import split_size

    assert split_size(None, 8, "train", "the train split") == 8
    assert split_size(0, 8, "train", "the train split") == 0
    for size in (-1, 9):
        with pytest.raises(ValueError, match=rf"^expected 0 <= size <= 8 \(the train split\), got {size}: "):
            split_size(size, 8, "train", "the train split")
    pf = tmp_path / "pf"
    write_pathfinder(pf, "pathfinder32", 10)  # train 8
    assert len(make_source("pathfinder32", "train", data_dir=pf)) == 8
    assert len(make_source("pathfinder32", "train", data_dir=pf, size=0)) == 0
