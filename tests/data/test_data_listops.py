"""ListOps generator: labels by an independent evaluator, bounds, determinism, disjoint
splits, the tree distribution against a plain rejection sampler, the cache and errors."""

import json
import os
import pickle
import random
import statistics
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from seqkit import cli
from seqkit.data import (
    ListOpsCacheNotFoundError,
    ListOpsCacheSource,
    ListOpsConfig,
    ListOpsSource,
    batches,
    evaluate_listops,
    generate_listops,
    generate_listops_batch,
    listops_split_of,
    listops_text,
    make_source,
    tokenize_listops,
    write_listops,
)

SYMBOLS = ["<pad>", *map(str, range(10)), "[MIN", "[MAX", "[MED", "[SM", "]"]
OPS = ("[MIN", "[MAX", "[MED", "[SM")


# -- independent references -------------------------------------------------------------


def _apply(f, x):
    """Curried application, as the printed pairs read: `( head x )` starts an argument
    list, `( partial x )` extends it, `( partial ] )` evaluates it."""
    if isinstance(f, str):
        return (f, [x])
    op, args = f
    if x != "]":
        return (op, [*args, x])
    return {
        "[MIN": lambda: min(args),
        "[MAX": lambda: max(args),
        "[MED": lambda: int(statistics.median(args)),  # numpy.median's value, faster
        "[SM": lambda: sum(args) % 10,
    }[op]()


def _evaluate_text(text: str):
    """Evaluate the LRA `.tsv` text with a stack over its words: `( A B )` is `A` applied to `B`."""
    stack = []
    for w in text.split():
        if w == ")":
            x = stack.pop()
            f = stack.pop()
            assert stack.pop() == "(", text
            stack.append(_apply(f, x))
        else:
            stack.append(int(w) if w.isdigit() else w)
    assert len(stack) == 1 and isinstance(stack[0], int), stack
    return stack[0]


def _tree(tokens):
    """Tokens (ids) -> nested `(op index, [children])` / digit, by recursion."""
    words = [SYMBOLS[t] for t in np.asarray(tokens).tolist()]
    pos = 0

    def node():
        nonlocal pos
        w = words[pos]
        pos += 1
        if w.isdigit():
            return int(w)
        children = []
        while words[pos] != "]":
            children.append(node())
        pos += 1
        return (OPS.index(w), children)

    t = node()
    assert pos == len(words)
    return t


def _reference_sample(rng, cfg, leaf_op_p=0.25, args_hi=None):
    """The grammar, plainly: recursive, rejection on the token count (abandoning a
    tree as soon as it is too long). Returns nested `(op, [children])` / digit."""
    args_hi = cfg.max_args if args_hi is None else args_hi

    class TooLong(Exception):
        pass

    while True:
        count = 0

        def node(depth):
            nonlocal count
            if depth < cfg.max_depth and rng.random() < leaf_op_p:
                count += 2
                if count >= cfg.max_length:
                    raise TooLong
                k = rng.randint(2, args_hi)
                return (rng.randrange(4), [node(depth + 1) for _ in range(k)])
            count += 1
            if count >= cfg.max_length:
                raise TooLong
            return rng.randrange(10)

        try:
            t = node(1)
        except TooLong:
            continue
        if count > cfg.min_length:
            return t


def _stats(t, out):
    """Add a tree's statistics to `out` (a dict of Counters); returns (value, depth, tokens)."""
    if isinstance(t, int):
        return t, 1, 1
    op, children = t
    out["arity"][len(children)] += 1
    out["op"][op] += 1
    vals, depth, n = [], 0, 2
    for c in children:
        v, d, m = _stats(c, out)
        vals.append(v)
        depth, n = max(depth, d), n + m
    vals.sort()
    k = len(vals)
    value = (vals[0], vals[-1], (vals[(k - 1) // 2] + vals[k // 2]) // 2, sum(vals) % 10)[op]
    return value, depth + 1, n


def _distribution(trees):
    out = {k: Counter() for k in ("arity", "op", "label", "depth", "length", "ops")}
    for t in trees:
        before = sum(out["arity"].values())
        value, depth, n = _stats(t, out)
        out["label"][value] += 1
        out["depth"][depth] += 1
        out["length"][n // 10] += 1
        out["ops"][sum(out["arity"].values()) - before] += 1
    return out


def _chi2_p(a: Counter, b: Counter) -> float:
    """Two-sample chi-square p-value; categories with fewer than 20 counts are pooled."""
    keys = sorted(set(a) | set(b))
    big = [k for k in keys if a[k] + b[k] >= 20]
    rest = [k for k in keys if k not in big]
    table = [[a[k] for k in big] + [sum(a[k] for k in rest)], [b[k] for k in big] + [sum(b[k] for k in rest)]]
    table = np.array(table)
    table = table[:, table.sum(0) > 0]
    return chi2_contingency(table)[1]


# -- format and evaluation ----------------------------------------------------------------


def test_listops_text_format_and_values():
    ids = tokenize_listops("[SM [MIN 3 4 ] 5 ]")
    assert [SYMBOLS[i] for i in ids] == ["[SM", "[MIN", "3", "4", "]", "5", "]"]
    text = listops_text(ids)
    assert text == "( ( ( [SM ( ( ( [MIN 3 ) 4 ) ] ) ) 5 ) ] )"
    np.testing.assert_array_equal(tokenize_listops(text), ids)  # parentheses are not tokens
    assert evaluate_listops(ids) == 8 == _evaluate_text(text)
    cases = {
        "[MED 1 2 3 4 ]": 2,  # int(median) of an even list: the mean rounded down
        "[MED 1 8 ]": 4,
        "[MED 7 0 9 ]": 7,
        "[MAX 2 9 [MIN 4 7 ] 0 ]": 9,
        "[SM 9 9 9 ]": 7,
        "[MIN [MAX 1 2 ] 5 3 ]": 2,
        "6": 6,
    }
    for src, value in cases.items():
        assert evaluate_listops(tokenize_listops(src)) == value, src
        assert _evaluate_text(listops_text(tokenize_listops(src))) == value, src
    # Padding is ignored.
    assert evaluate_listops(np.concatenate([ids, np.zeros(5, np.int32)])) == 8
    for bad in ("[MAX 1 2", "[MAX ]", "1 2", "]"):
        with pytest.raises(ValueError):
            evaluate_listops(tokenize_listops(bad))
    with pytest.raises(ValueError, match="unknown ListOps token"):
        tokenize_listops("[MAX 1 X ]")


@pytest.fixture(scope="module")
def lra_train():
    return generate_listops_batch(0, "train", range(2000))


def test_listops_labels_agree_with_an_independent_evaluator(lra_train):
    for i, ex in enumerate(lra_train):
        text = listops_text(ex.tokens)
        # The S4 pipeline's tokens: drop the parentheses, keep `]`.
        assert text.replace("(", "").replace(")", "").split() == [SYMBOLS[t] for t in ex.tokens]
        assert _evaluate_text(text) == ex.label, i
        assert evaluate_listops(ex.tokens) == ex.label, i


def test_listops_bounds_vocab_and_split(lra_train):
    lengths = np.array([ex.tokens.size for ex in lra_train])
    assert lengths.min() > 500 and lengths.max() < 2000
    for ex in lra_train[:500]:
        assert ex.tokens.dtype == np.int32
        assert ex.tokens.min() >= 1 and ex.tokens.max() <= 15  # no padding inside
        value, depth, n = _stats(_tree(ex.tokens), {"arity": Counter(), "op": Counter()})
        assert (value, depth, n) == (ex.label, ex.depth, ex.tokens.size)
        assert depth <= 10
        assert listops_split_of(ex.tokens) == "train"
    # All ten classes occur; MIN/MAX make 0 and 9 the most common (LRA's skew).
    counts = np.bincount([ex.label for ex in lra_train], minlength=10)
    assert counts.min() > 0 and counts.argmax() in (0, 9)


def test_listops_determinism_and_access_order(lra_train):
    order = [1999, 7, 0, 1234, 7]
    for i in order:
        ex = generate_listops(0, "train", i)
        np.testing.assert_array_equal(ex.tokens, lra_train[i].tokens)
        assert (ex.label, ex.depth) == (lra_train[i].label, lra_train[i].depth)
    shuffled = generate_listops_batch(0, "train", [11, 3, 500, 2])
    for i, ex in zip([11, 3, 500, 2], shuffled, strict=True):
        np.testing.assert_array_equal(ex.tokens, lra_train[i].tokens)
    other_seed = generate_listops(1, "train", 3)
    assert not np.array_equal(other_seed.tokens, lra_train[3].tokens)
    val = generate_listops(0, "val", 3)
    assert listops_split_of(val.tokens) == "val"
    src = ListOpsSource("train", seed=0, size=10)
    item = src[4]
    assert item["inputs"].shape == (2048,) and item["inputs"].dtype == np.int32
    assert item["mask"].dtype == np.bool_ and item["label"].dtype == np.int32
    n = lra_train[4].tokens.size
    np.testing.assert_array_equal(item["inputs"][:n], lra_train[4].tokens)
    assert item["mask"].sum() == n and item["mask"][:n].all() and not item["inputs"][n:].any()


# -- the distribution ---------------------------------------------------------------------

SMALL = ListOpsConfig(min_length=20, max_length=120)  # LRA's grammar, shorter trees
SHALLOW = ListOpsConfig(max_depth=4, min_length=10, max_length=80)  # the depth limit binds


@pytest.fixture(scope="module")
def distributions():
    out = {}
    for name, cfg in (("small", SMALL), ("shallow", SHALLOW)):
        n = 3000
        ours = [_tree(ex.tokens) for ex in generate_listops_batch(5, "train", range(n), cfg)]
        rng = random.Random(5)
        ref = [_reference_sample(rng, cfg) for _ in range(n)]
        out[name] = (_distribution(ours), _distribution(ref))
    return out


@pytest.mark.parametrize("name", ["small", "shallow"])
@pytest.mark.parametrize("stat", ["arity", "op", "label", "depth", "length", "ops"])
def test_listops_distribution_matches_plain_sampler(distributions, name, stat):
    ours, ref = distributions[name]
    assert _chi2_p(ours[stat], ref[stat]) > 1e-4, (ours[stat], ref[stat])


def test_listops_distribution_test_has_power(distributions):
    """A wrong operator probability or argument range would be caught."""
    ours, _ = distributions["shallow"]
    rng = random.Random(6)
    for kwargs, stats in (
        ({"leaf_op_p": 0.3}, ("ops", "length")),
        ({"args_hi": 9}, ("arity",)),
    ):
        wrong = _distribution([_reference_sample(rng, SHALLOW, **kwargs) for _ in range(3000)])
        for stat in stats:
            assert _chi2_p(ours[stat], wrong[stat]) < 1e-4, (kwargs, stat)


# -- duplicates ---------------------------------------------------------------------------

TINY = ListOpsConfig(max_depth=3, max_args=3, min_length=3, max_length=8)  # few distinct trees


def test_listops_splits_are_disjoint_and_the_cache_deduplicates(tmp_path):
    # On the fly: a tiny tree space repeats trees within a split, never across splits.
    fly = {
        s: [ex.tokens.tobytes() for ex in generate_listops_batch(0, s, range(400), TINY)]
        for s in ("train", "val", "test")
    }
    assert len(set(fly["train"])) < 400  # repeats happen here: the cache must remove them
    assert not set(fly["train"]) & set(fly["val"])
    assert not set(fly["train"]) & set(fly["test"])
    assert not set(fly["val"]) & set(fly["test"])

    meta = write_listops(tmp_path, 1000, seed=0, splits=(0.6, 0.2, 0.2), config=TINY)
    seen = {}
    for split, n in meta["splits"].items():
        src = ListOpsCacheSource(tmp_path, split, config=TINY, seq_len=7)
        rows = [src[i] for i in range(n)]
        keys = [r["inputs"][r["mask"]].tobytes() for r in rows]
        assert len(set(keys)) == n, split  # no repeat within a split
        seen[split] = set(keys)
        replaced = {int(k): v for k, v in meta["replaced"][split].items()}
        for i in [0, 1, n - 1, *list(replaced)[:3]]:
            ex = generate_listops(0, split, replaced.get(i, i), TINY)
            np.testing.assert_array_equal(rows[i]["inputs"][rows[i]["mask"]], ex.tokens)
            assert rows[i]["label"] == ex.label
    assert meta["replaced"]["train"]  # repeats were replaced
    assert (
        not seen["train"] & seen["val"]
        and not seen["train"] & seen["test"]
        and not seen["val"] & seen["test"]
    )


# -- the cache ----------------------------------------------------------------------------


def test_listops_cache_round_trip_and_refusals(tmp_path):
    out = tmp_path / "listops"
    calls = []
    meta = write_listops(out, 60, seed=3, progress=lambda d, t: calls.append((d, t)))
    assert meta["splits"] == {"train": 58, "val": 1, "test": 1}
    assert calls[-1] == (60, 60)
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    cached = make_source("listops", "train", data_dir=tmp_path)  # finds data_dir/listops
    fly = make_source("listops", "train", seed=3, size=58)
    assert len(cached) == 58
    for i in (0, 31, 57):
        a, b = cached[i], fly[i]
        for k in ("inputs", "mask", "label"):
            np.testing.assert_array_equal(a[k], b[k])
    assert len(pickle.dumps(cached)) < 4096
    # The same settings: kept as written; other settings: refused, showing both.
    stamp = os.path.getmtime(out / "train_tokens.npy")
    assert write_listops(out, 60, seed=3)["seed"] == 3
    assert os.path.getmtime(out / "train_tokens.npy") == stamp
    with pytest.raises(ValueError, match="seed 3.*seed 4"):
        write_listops(out, 60, seed=4)
    meta = write_listops(out, 60, seed=4, overwrite=True)
    assert meta["seed"] == 4
    # A cache of another grammar is refused where the LRA one is asked for.
    other = tmp_path / "small"
    write_listops(other, 30, config=SMALL)
    with pytest.raises(ValueError, match="written with"):
        make_source("listops", "train", data_dir=other)
    with pytest.raises(ValueError, match="written with"):
        ListOpsCacheSource(other, "train", config=ListOpsConfig())
    assert ListOpsCacheSource(other, "val", config=SMALL, seq_len=119)[0]["inputs"].shape == (119,)


def test_listops_batches_feed_the_mask(tmp_path):
    src = make_source("listops", "val", size=8)
    batch = next(batches(src, batch_size=4, seed=0))
    assert batch["inputs"].shape == (4, 2048) and batch["inputs"].dtype == np.int32
    assert batch["mask"].shape == (4, 2048) and batch["mask"].dtype == np.bool_
    assert batch["label"].shape == (4,)
    assert np.array_equal(batch["mask"], batch["inputs"] != 0)


# -- bad input ----------------------------------------------------------------------------


def test_listops_bad_input(tmp_path):
    with pytest.raises(ValueError, match="expected split"):
        generate_listops(0, "dev", 0)
    with pytest.raises(ValueError, match="expected split"):
        ListOpsSource("validation")
    with pytest.raises(ValueError, match="expected split"):
        make_source("listops", "dev")
    with pytest.raises(ValueError, match="index >= 0"):
        generate_listops(0, "train", -1)
    with pytest.raises(ValueError, match="size >= 0"):
        ListOpsSource("train", size=-1)
    with pytest.raises(ValueError, match="size >= 0"):
        make_source("listops", "train", size=-1)
    with pytest.raises(ValueError, match="size >= 1"):
        write_listops(tmp_path / "x", 0)
    # 96/2/2 of 10 leaves val and test empty; 26 is the least size (round(0.52) = 1)
    with pytest.raises(ValueError, match=r"every split with a fraction > 0 an example \(at least 26\)"):
        write_listops(tmp_path / "x", 10)
    assert min(write_listops(tmp_path / "y", 26)["splits"].values()) == 1
    # a fraction of 0 asks for an empty split, as write_pathfinder allows
    with pytest.raises(ValueError, match=r"an example \(at least 2\), got \{'train': 1, 'val': 0"):
        write_listops(tmp_path / "x", 1, splits=(0.5, 0.0, 0.5))
    only_train = {"train": 3, "val": 0, "test": 0}
    assert write_listops(tmp_path / "z", 3, splits=(1.0, 0.0, 0.0))["splits"] == only_train
    lengths = {s: len(make_source("listops", s, data_dir=tmp_path / "z")) for s in only_train}
    assert lengths == only_train
    cached = make_source("listops", "train", data_dir=tmp_path / "z")
    np.testing.assert_array_equal(cached[2]["inputs"], ListOpsSource("train")[2]["inputs"])
    with pytest.raises(ValueError, match="expected a data seed >= 0, got -1"):
        write_listops(tmp_path / "x", 30, seed=-1)
    for build in (lambda: ListOpsSource("val", seed=-1), lambda: make_source("listops", "val", seed=-1)):
        with pytest.raises(ValueError, match="^expected a data seed >= 0, got -1$"):
            build()  # when built, not at the first item (in a grain worker)
    assert not (tmp_path / "x").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError):
        write_listops(blocker / "cache", 30)
    with pytest.raises(ValueError, match=r"max_length / seq_len\) >= 1999"):
        ListOpsSource("train", seq_len=1024)
    with pytest.raises(ValueError, match="unknown option"):
        make_source("listops", "train", as_tokens=True)
    with pytest.raises(ValueError, match="max_args >= 2"):
        ListOpsConfig(max_args=1)
    with pytest.raises(ValueError, match="min_length"):
        ListOpsConfig(min_length=10, max_length=11)
    with pytest.raises(ValueError, match="the longest tree"):
        ListOpsConfig(max_depth=2, min_length=30, max_length=40)
    with pytest.raises(ValueError, match="no acceptable tree"):  # only 1 + 3k tokens with 2 arguments
        generate_listops(0, "train", 0, ListOpsConfig(max_depth=3, max_args=2, min_length=4, max_length=6))
    with pytest.raises(IndexError):
        ListOpsSource("train", size=3)[3]
    missing = tmp_path / "nothing"
    with pytest.raises(ListOpsCacheNotFoundError, match="seqkit data listops"):
        ListOpsCacheSource(missing, "train")
    with pytest.raises(FileNotFoundError, match="seqkit data listops"):
        make_source("listops", "train", data_dir=missing)


def test_listops_corrupt_cache_is_named(tmp_path):
    write_listops(tmp_path, 30, seed=1)
    (tmp_path / "train_labels.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="train_labels.npy"):
        ListOpsCacheSource(tmp_path, "train")
    (tmp_path / "metadata.json").write_text("{")
    with pytest.raises(ValueError, match="metadata.json"):
        ListOpsCacheSource(tmp_path, "train")


def test_listops_cli(tmp_path, capsys):
    out = tmp_path / "cache"
    argv = ["data", "listops", "--size", "40", "--out", str(out), "--seed", "2"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "40/40 examples" in captured.err and "examples/s" in captured.err
    assert "wrote 40 ListOps examples" in captured.out
    assert json.loads((out / "metadata.json").read_text())["seed"] == 2
    assert cli.main(argv) == 0  # the same cache: kept
    assert "already holds" in capsys.readouterr().out
    assert cli.main([*argv[:-1], "3"]) == 2  # another seed: refused, both shown
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed 2" in err and "seed 3" in err and "--overwrite" in err
    assert cli.main([*argv[:-1], "3", "--overwrite"]) == 0
    assert cli.main(["data", "list"]) == 0
    assert "listops" in capsys.readouterr().out


@pytest.mark.slow
def test_listops_lra_bounds_match_plain_sampler():
    """At LRA's bounds: labels, depths and lengths against the plain sampler."""
    n = 1500
    ours = _distribution([_tree(ex.tokens) for ex in generate_listops_batch(9, "train", range(n))])
    rng = random.Random(9)
    ref = _distribution([_reference_sample(rng, ListOpsConfig()) for _ in range(n)])
    for stat in ("label", "length", "ops", "arity", "op"):
        assert _chi2_p(ours[stat], ref[stat]) > 1e-4, stat


@pytest.mark.slow
def test_listops_cache_with_workers(tmp_path):
    meta = write_listops(tmp_path, 3000, seed=4, workers=2, chunk=500)
    src = ListOpsCacheSource(tmp_path, "train")
    for i in (0, 1500, len(src) - 1):
        np.testing.assert_array_equal(
            src[i]["inputs"][src[i]["mask"]], generate_listops(4, "train", i).tokens
        )
    assert sum(meta["splits"].values()) == 3000


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"listops"', "null"])
def test_cache_metadata_that_is_not_an_object_is_named(tmp_path, content):
    from seqkit.data import DataError
    from seqkit.data._listops import read_listops_metadata

    (tmp_path / "metadata.json").write_text(content)
    with pytest.raises(DataError, match=r"metadata.json: expected the JSON object write_listops writes"):
        read_listops_metadata(tmp_path)
