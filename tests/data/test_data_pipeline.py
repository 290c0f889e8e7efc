"""grain batching: seeded per-epoch shuffles, exact resume from any step, worker processes."""

import itertools

import numpy as np
import pytest

from seqkit.data import batches, make_source


class Range:
    """A source whose example i carries i in its inputs and its label."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"inputs": np.full((3, 2), i, np.float32), "label": np.int32(i)}


def _take(it, k):
    return [b["label"].copy() for b in itertools.islice(it, k)]


def test_data_batches_shapes_and_epochs():
    src = Range(12)
    got = list(itertools.islice(batches(src, batch_size=4, seed=1), 6))
    assert got[0]["inputs"].shape == (4, 3, 2) and got[0]["inputs"].dtype == np.float32
    assert got[0]["label"].shape == (4,) and got[0]["label"].dtype == np.int32
    for b in got:
        np.testing.assert_array_equal(b["inputs"][:, 0, 0], b["label"])
    epoch0 = np.concatenate([b["label"] for b in got[:3]])
    epoch1 = np.concatenate([b["label"] for b in got[3:]])
    # each epoch is a permutation of the source, and the two epochs differ
    assert sorted(epoch0) == list(range(12)) and sorted(epoch1) == list(range(12))
    assert not np.array_equal(epoch0, epoch1)
    assert not np.array_equal(epoch0, np.arange(12))


def test_data_batches_resume_exact():
    src = Range(10)  # 2 full batches of 4 per epoch; the remainder is dropped
    full = _take(batches(src, batch_size=4, seed=7), 12)
    for k in (1, 2, 5, 9):
        resumed = _take(batches(src, batch_size=4, seed=7, start_step=k), 12 - k)
        assert len(resumed) == 12 - k
        for a, b in zip(full[k:], resumed, strict=True):
            np.testing.assert_array_equal(a, b)


def test_data_batches_seeds_and_options():
    src = Range(12)
    a = _take(batches(src, batch_size=4, seed=3), 6)
    b = _take(batches(src, batch_size=4, seed=3), 6)
    c = _take(batches(src, batch_size=4, seed=4), 6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    plain = _take(batches(src, batch_size=5, seed=0, shuffle=False, drop_remainder=False, num_epochs=2), 100)
    assert [len(x) for x in plain] == [5, 5, 2, 5, 5, 2]
    np.testing.assert_array_equal(np.concatenate(plain), np.tile(np.arange(12), 2))
    assert len(_take(batches(src, batch_size=5, seed=0, num_epochs=3), 100)) == 6
    with pytest.raises(ValueError, match="seed"):
        batches(src, batch_size=4, seed=-1)
    with pytest.raises(ValueError, match="no batch"):
        batches(Range(3), batch_size=4, seed=0)


def test_data_batches_worker_processes_match_threads():
    src = make_source("pathfinder32", "train", contour_length=6, size=24)
    threads = list(itertools.islice(batches(src, batch_size=4, seed=2, start_step=3), 5))
    procs = list(itertools.islice(batches(src, batch_size=4, seed=2, start_step=3, worker_count=2), 5))
    assert len(procs) == 5
    for a, b in zip(threads, procs, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_array_equal(a["inputs"], b["inputs"])


class Recorded(Range):
    """A `Range` that records which examples were read."""

    def __init__(self, n):
        super().__init__(n)
        self.read = []

    def __getitem__(self, i):
        self.read.append(int(i))
        return super().__getitem__(i)


@pytest.mark.parametrize("consecutive", [False, True])
def test_data_batches_process_parts_make_the_one_process_batch(consecutive):
    kw = dict(batch_size=6, seed=5, consecutive=consecutive)
    # Resumed at step 2, into the second epoch: 21 examples are 3 batches of 6 an epoch.
    whole = _take(batches(Range(21), start_step=2, **kw), 5)
    parts = [
        _take(batches(Range(21), start_step=2, process_index=p, process_count=3, **kw), 5) for p in range(3)
    ]
    for k, batch in enumerate(whole):
        assert [len(part[k]) for part in parts] == [2, 2, 2]
        np.testing.assert_array_equal(np.concatenate([part[k] for part in parts]), batch)
    # Over one epoch each process reads its own rows and nothing else.
    epoch = np.concatenate(_take(batches(Range(21), num_epochs=1, **kw), 3))
    sources = [Recorded(21) for _ in range(3)]
    for p, src in enumerate(sources):
        got = np.concatenate(_take(batches(src, num_epochs=1, process_index=p, process_count=3, **kw), 3))
        assert sorted(src.read) == sorted(got)
        np.testing.assert_array_equal(
            got, np.concatenate([epoch[6 * k + 2 * p : 6 * k + 2 * p + 2] for k in range(3)])
        )
    assert len(set().union(*(s.read for s in sources))) == 18 == sum(len(s.read) for s in sources)


def test_data_batches_process_options_are_checked():
    with pytest.raises(ValueError, match=r"batch_size divisible by process_count=4 .*got 6"):
        batches(Range(12), batch_size=6, seed=0, process_index=0, process_count=4)
    with pytest.raises(ValueError, match=r"0 <= process_index < process_count=2, got 2"):
        batches(Range(12), batch_size=6, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="needs drop_remainder=True"):
        batches(Range(12), batch_size=6, seed=0, drop_remainder=False, process_index=0, process_count=2)
