"""Sequential CIFAR-10 from synthetic archives in the real format (no downloads)."""

import os
import pickle
import tarfile

import numpy as np
import pytest

from helpers import assert_close
from seqkit.data import CifarSource, DataNotFoundError, make_source

N_BATCH, N_TEST = 10, 8  # images per synthetic training batch / in the test batch


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(1, 6):
        out[f"data_batch_{i}"] = rng.integers(0, 256, (N_BATCH, 3072), dtype=np.uint8)
    out["test_batch"] = rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8)
    labels = {k: [int(v) for v in rng.integers(0, 10, len(x))] for k, x in out.items()}
    return out, labels


def _write_folder(folder, data, labels, skip=()):
    os.makedirs(folder, exist_ok=True)
    for name, x in data.items():
        if name in skip:
            continue
        with open(os.path.join(folder, name), "wb") as f:
            # the archive's batches are pickled dicts with bytes keys
            pickle.dump({b"batch_label": name.encode(), b"labels": labels[name], b"data": x}, f, protocol=2)


@pytest.fixture
def cifar(tmp_path):
    data, labels = _batches()
    root = tmp_path / "extracted"
    _write_folder(root / "cifar-10-batches-py", data, labels)
    return root, data, labels


def _pixel(row, t, ch):
    """Channel `ch` of pixel `t` (raster order) from a CIFAR row: planes R, G, B of 32x32."""
    r, c = divmod(t, 32)
    return float(row[ch * 1024 + r * 32 + c])


def test_data_cifar_rgb_values_and_splits(cifar):
    root, data, labels = cifar
    train = make_source("scifar", "train", data_dir=root)
    val = make_source("scifar", "val", data_dir=root)
    test = make_source("scifar", "test", data_dir=root)
    assert (len(train), len(val), len(test)) == (45, 5, 8)
    all_x = np.concatenate([data[f"data_batch_{i}"] for i in range(1, 6)])
    all_y = sum((labels[f"data_batch_{i}"] for i in range(1, 6)), [])
    mean = [0.4914, 0.4822, 0.4465]
    std = [0.2470, 0.2435, 0.2616]
    cases = [
        (train, 0, all_x[0], all_y[0]),
        (train, 44, all_x[44], all_y[44]),
        (val, 2, all_x[47], all_y[47]),
        (test, 7, data["test_batch"][7], labels["test_batch"][7]),
    ]
    for src, i, row, y in cases:
        item = src[i]
        assert item["inputs"].shape == (1024, 3) and item["inputs"].dtype == np.float32
        assert item["label"].dtype == np.int32 and int(item["label"]) == y
        expected = np.empty((1024, 3))
        for t in range(1024):
            for ch in range(3):
                expected[t, ch] = (_pixel(row, t, ch) / 255.0 - mean[ch]) / std[ch]
        assert_close(item["inputs"], expected, rtol=1e-6)


def test_data_cifar_gray_tokens_and_scalars(cifar):
    root, data, labels = cifar
    row = data["test_batch"][3]
    tok = make_source("cifar_gray", "test", data_dir=root, as_tokens=True)[3]
    val = make_source("cifar_gray", "test", data_dir=root)[3]
    assert tok["inputs"].shape == (1024,) and tok["inputs"].dtype == np.int32
    assert val["inputs"].shape == (1024, 1) and val["inputs"].dtype == np.float32
    for t in range(1024):
        g = 0.2989 * _pixel(row, t, 0) + 0.5870 * _pixel(row, t, 1) + 0.1140 * _pixel(row, t, 2)
        assert abs(tok["inputs"][t] - g) <= 0.5 + 1e-3
        assert abs(val["inputs"][t, 0] - (tok["inputs"][t] - 122.6) / 61.0) < 1e-5
    assert int(tok["label"]) == labels["test_batch"][3]


def test_data_cifar_archive_env_and_folder(cifar, tmp_path, monkeypatch):
    root, data, _ = cifar
    tar_dir = tmp_path / "archive"
    tar_dir.mkdir()
    with tarfile.open(tar_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from_dir = make_source("scifar", "val", data_dir=root)
    from_tar = make_source("scifar", "val", data_dir=tar_dir)
    from_folder = make_source("scifar", "val", data_dir=root / "cifar-10-batches-py")
    monkeypatch.setenv("SEQKIT_DATA", str(tar_dir))
    from_env = make_source("scifar", "val")
    for i in range(len(from_dir)):
        for other in (from_tar, from_folder, from_env):
            np.testing.assert_array_equal(from_dir[i]["inputs"], other[i]["inputs"])
    # small to pickle: no arrays inside
    assert len(pickle.dumps(from_tar)) < 2000
    assert len(make_source("scifar", "train", data_dir=root, size=7)) == 7


def test_data_cifar_missing_files_say_where(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="SEQKIT_DATA"):
        make_source("scifar", "train")
    with pytest.raises(DataNotFoundError) as e:
        make_source("scifar", "train", data_dir=tmp_path)
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(e.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in str(e.value)
    data, labels = _batches()
    _write_folder(tmp_path / "cifar-10-batches-py", data, labels, skip=("data_batch_3",))
    with pytest.raises(FileNotFoundError) as e:
        CifarSource("train", data_dir=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_3") in str(e.value)
    assert "data_batch_2" not in str(e.value)


def test_data_cifar_bad_options(cifar):
    root, _, _ = cifar
    with pytest.raises(ValueError, match=r"\[.as_tokens.\] for .scifar.; accepted: patch_size"):
        make_source("scifar", "train", data_dir=root, as_tokens=True)
    with pytest.raises(ValueError, match="split"):
        make_source("cifar_gray", "dev", data_dir=root)
    with pytest.raises(ValueError, match="unknown dataset"):
        make_source("cifar100", "train", data_dir=root)
