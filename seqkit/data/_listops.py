"""ListOps: the Long Range Arena generator (Tay et al., "Long Range Arena", ICLR 2021),
after Nangia & Bowman, "ListOps: A Diagnostic Dataset for Latent Tree Learning"
(NAACL SRW 2018), seeded per example.

A tree is a digit `0..9` or an operator applied to a list of trees, written in prefix
form and closed by `]`:

    [MAX 2 9 [MIN 4 7 ] 0 ]        value 9

`[MIN`, `[MAX`, `[MED` (median of the list, the mean of the two middle values
rounded down for even lists) and `[SM` (sum modulo 10). The label is the value of
the tree (10 classes).

**What is followed.** The grammar and rejection rule are those of the LRA code
(`lra_benchmarks/data/listops.py`), which differs from some prose descriptions:

- The root is at depth 1. A node at depth `< max_depth = 10` is an operator with
  probability `1/4` and a digit with probability `3/4` (the code draws
  `r = random()` and makes a digit when `r > VALUE_P = 0.25`); at `max_depth` it is
  always a digit. The digit is uniform over `0..9`, the operator uniform over the
  four above, the number of arguments uniform over `2..max_args = 10` (both ends
  included: Python's `randint`).
- The length is the number of tokens: 1 per digit, 2 per operator (its head and
  its `]`). A tree is kept when `500 < length < 2000` (both strict), so inputs hold
  at most 1999 tokens; others are drawn again.
- The median is `int(numpy.median(args))`; the sum is `sum(args) % 10`.
- Duplicated trees are removed, and the splits are 96k / 2k / 2k.

The released `.tsv` files print a tree with parentheses around every partial
application: `[MAX 2 9 ]` is `( ( ( [MAX 2 ) 9 ) ] )` (see `listops_text`). The
S4 reference pipeline (state-spaces/s4, `src/dataloaders/lra.py`) deletes the
parentheses, keeps `]` as a token, pads to 2048 and masks by length; seqkit's
tokens are the same 15 symbols plus padding id 0 (`VOCAB`; S4 also appends an
end-of-sequence token, which the padding mask makes unnecessary here).

**Seeding.** Example `index` of `split` is a pure function of `(seed, split,
index)` and the configuration: it is drawn from its own stream,
`PCG64(SeedSequence([seed, split_id, index]))`, by rejection (see below), so any
example regenerates alone, in any order, and a split can be written by parallel
workers. `generate_listops_batch` gives the same examples as one at a time.

**Duplicates.** Splits are disjoint by construction: every tree belongs to one
split, picked by a hash of its token ids (`listops_split_of`: 80% of trees belong
to train, 10% each to val and test, the same for every seed), and a split keeps
only its own trees. This holds for sets generated on the fly as well as for
caches. The price: train draws a quarter more trees, val and test (4% of the data)
ten times more, so the LRA splits draw 1.6x as many trees as they keep (96k / 0.8
+ 2 x 2k / 0.1 = 160k for 100k); deduplicating when writing instead would leave
sets generated on the fly unchecked. Within a split, `write_listops` hashes every
example and replaces a repeated tree by the next unused example of that split
(listed in the cache metadata). At the LRA lengths this does not happen in
practice: a kept tree has at least 168 digits, each uniform, so two draws
coincide with probability below `10**-160`; sets generated on the fly are
therefore not checked.

**Distribution and speed.** The sampler is exact and vectorized. For each example
it draws a batch of independent trees breadth-first (one integer per node, in
order, from the example's stream; many examples share each NumPy call), prunes a
tree as soon as its token count must reach `max_length`, and keeps the first tree
of the batch, in order, whose length is acceptable and that the split owns; an
example without one draws a new batch twice as large. The first success of a
sequence of independent attempts has the distribution of the rejection sampler,
whatever the batch boundaries.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from seqkit._paths import expand_path

from ._files import (
    LARGER_CACHE,
    DataError,
    cache_kind,
    check_same_settings,
    find_cache,
    one_line,
    other_cache,
    other_kind,
    read_json_file,
    split_size,
)
from ._index import check_index

# Bumped whenever the tokens produced for a given (config, seed, split, index) change.
GENERATOR_VERSION = 1

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Release sizes (Long Range Arena).
DEFAULT_SPLIT_SIZES = {"train": 96_000, "val": 2_000, "test": 2_000}

# Share of tree space owned by each split: a tree belongs to the split whose interval
# holds `blake2b(token ids) / 2**64`. About sqrt-proportional to the split sizes, which
# keeps the number of trees skipped small overall.
SPLIT_BUCKETS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
_BUCKET_EDGES = (round(0.8 * 2**64), round(0.9 * 2**64))

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VOCAB = ("<pad>", *(str(d) for d in range(10)), *OPERATORS, "]")
PAD = 0
DIGIT0 = 1  # id of digit d is DIGIT0 + d
OP0 = 11  # id of OPERATORS[k] is OP0 + k
CLOSE = 15
VOCAB_SIZE = len(VOCAB)
DEFAULT_SEQ_LEN = 2048

_TOKEN_ID = {s: i for i, s in enumerate(VOCAB)}


@dataclasses.dataclass(frozen=True)
class ListOpsConfig:
    """The ListOps grammar and rejection bounds; the defaults are LRA's.

    **Arguments:**

    - `max_depth`: depth of the deepest nodes (the root is at depth 1); nodes at
      this depth are digits.
    - `max_args`: most arguments of an operator (at least 2).
    - `min_length`, `max_length`: a tree is kept when
      `min_length < number of tokens < max_length` (both strict).
    """

    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500
    max_length: int = 2000

    def __post_init__(self):
        if self.max_depth < 1:
            raise ValueError(f"expected max_depth >= 1, got {self.max_depth}")
        if self.max_args < 2:
            raise ValueError(f"expected max_args >= 2, got {self.max_args}")
        if not 0 <= self.min_length < self.max_length - 1:
            raise ValueError(
                f"expected 0 <= min_length < max_length - 1 (some length strictly between), "
                f"got min_length={self.min_length}, max_length={self.max_length}"
            )
        # The longest tree: every node above max_depth an operator with max_args arguments.
        A, D = self.max_args, self.max_depth
        most = A ** (D - 1) + 2 * sum(A**d for d in range(D - 1))
        if most <= self.min_length:
            raise ValueError(
                f"expected min_length < {most} (the longest tree at max_depth={D}, max_args={A}), "
                f"got {self.min_length}"
            )

    @property
    def longest(self) -> int:
        """The most tokens a kept tree has: `max_length - 1`."""
        return self.max_length - 1


LRA_LISTOPS = ListOpsConfig()


def split_id(split: str | int) -> int:
    if isinstance(split, str):
        if split not in SPLIT_IDS:
            raise ValueError(f"expected split in {tuple(SPLIT_IDS)}, got {split!r}")
        return SPLIT_IDS[split]
    if split not in SPLIT_IDS.values():
        raise ValueError(f"expected split id in (0, 1, 2), got {split}")
    return int(split)


def _split_name(split: str | int) -> str:
    return next(k for k, v in SPLIT_IDS.items() if v == split_id(split))


@dataclasses.dataclass(frozen=True)
class ListOpsExample:
    """One generated example: token ids (no padding), the label and the tree depth."""

    tokens: np.ndarray  # (n,) int32 ids in 1..15
    label: int
    depth: int  # levels of the tree; a lone digit has depth 1


# -- token strings ------------------------------------------------------------------


def _bucket(tokens: np.ndarray) -> int:
    """The split id that owns a tree: a blake2b hash of its token ids (as bytes)."""
    h = hashlib.blake2b(tokens.astype(np.uint8).tobytes(), digest_size=8, person=b"seqkit-listops")
    h = int.from_bytes(h.digest(), "little")
    return 0 if h < _BUCKET_EDGES[0] else (1 if h < _BUCKET_EDGES[1] else 2)


def _parse(ids: list[int]):
    """Nested `(token id, [children])` of one tree in prefix form; ValueError if malformed."""
    stack: list[tuple[int, list]] = []
    root = None
    for t in ids:
        if root is not None:
            raise ValueError("expected one tree, got tokens after its end")
        if DIGIT0 <= t < DIGIT0 + 10:
            node = (t, None)
        elif OP0 <= t < OP0 + len(OPERATORS):
            stack.append((t, []))
            continue
        elif t == CLOSE:
            if not stack:
                raise ValueError("unbalanced ']'")
            node = stack.pop()
            if not node[1]:
                raise ValueError(f"{VOCAB[node[0]]} has no arguments")
        else:
            raise ValueError(f"expected token ids in 1..{VOCAB_SIZE - 1}, got {t}")
        if stack:
            stack[-1][1].append(node)
        else:
            root = node
    if stack or root is None:
        raise ValueError("incomplete tree")
    return root


def _nonpad(tokens) -> list[int]:
    return [t for t in np.asarray(tokens).reshape(-1).tolist() if t != PAD]


def listops_split_of(tokens) -> str:
    """The split that owns a tree: `"train"`, `"val"` or `"test"`.

    A fixed hash of the tree's token ids (blake2b of the ids as bytes, padding
    removed) picks it, the same for every seed: 80% of trees belong to train, 10%
    to val, 10% to test. Generated splits hold only their own trees, so they never
    share one.
    """
    ids = np.array(_nonpad(tokens), np.int64)
    if ids.size and not (ids.min() >= 1 and ids.max() < VOCAB_SIZE):
        raise ValueError(f"expected token ids in 0..{VOCAB_SIZE - 1}, got {ids.min()}..{ids.max()}")
    return _split_name(_bucket(ids))


def evaluate_listops(tokens) -> int:
    """The value of a tree given as token ids (`VOCAB`; padding ignored): `[MIN`,
    `[MAX`, `[MED` (mean of the two middle values rounded down, for even lists)
    and `[SM` (sum modulo 10) over their arguments. Raises `ValueError` when the
    ids do not form exactly one tree."""
    stack: list[tuple[int, list[int]]] = []
    result = None
    for t in _nonpad(tokens):
        if result is not None:
            raise ValueError("expected one tree, got tokens after its end")
        if DIGIT0 <= t < DIGIT0 + 10:
            value = t - DIGIT0
        elif OP0 <= t < OP0 + len(OPERATORS):
            stack.append((t - OP0, []))
            continue
        elif t == CLOSE:
            if not stack:
                raise ValueError("unbalanced ']'")
            op, args = stack.pop()
            if not args:
                raise ValueError(f"{OPERATORS[op]} has no arguments")
            args.sort()
            k = len(args)
            if op == 0:
                value = args[0]
            elif op == 1:
                value = args[-1]
            elif op == 2:
                value = (args[(k - 1) // 2] + args[k // 2]) // 2
            else:
                value = sum(args) % 10
        else:
            raise ValueError(f"expected token ids in 1..{VOCAB_SIZE - 1}, got {t}")
        if stack:
            stack[-1][1].append(value)
        else:
            result = value
    if stack or result is None:
        raise ValueError("incomplete tree")
    return result


def listops_text(tokens) -> str:
    """The tree in the LRA `.tsv` "Source" format: every partial application in
    parentheses, `[MAX 2 9 ]` printed as `( ( ( [MAX 2 ) 9 ) ] )`."""
    _parse(_nonpad(tokens))  # one well-formed tree, or ValueError
    # Each open operator's text so far; an argument `a` turns `s` into `( s a )`.
    stack: list[str] = []
    text = ""
    for t in _nonpad(tokens):
        if OP0 <= t < OP0 + len(OPERATORS):
            stack.append(VOCAB[t])
            continue
        done = VOCAB[t] if t != CLOSE else f"( {stack.pop()} ] )"
        if stack:
            stack[-1] = f"( {stack[-1]} {done} )"
        else:
            text = done
    return text


def tokenize_listops(text: str) -> np.ndarray:
    """Token ids (int32) of a tree in the LRA `.tsv` format or the plain prefix form:
    parentheses are dropped, as in the S4 reference pipeline."""
    words = text.replace("(", " ").replace(")", " ").split()
    unknown = [w for w in words if w not in _TOKEN_ID or w == VOCAB[PAD]]
    if unknown:
        raise ValueError(f"unknown ListOps token {unknown[0]!r}; expected one of {VOCAB[1:]}")
    return np.array([_TOKEN_ID[w] for w in words], np.int32)


# -- the generator ------------------------------------------------------------------


class _Tables:
    """Lookup tables of the uniform integer `v` drawn per node and of node codes.

    With `C = 4 (max_args - 1)` operator/arity pairs and `N = 4 lcm(C, 10)`: a draw
    `v < 3N/4` is the digit `v % 10` (probability 3/4, digits uniform); otherwise
    `w = (v - 3N/4) % C` gives operator `w % 4` with `2 + w // 4` arguments, all
    pairs equally likely. At `max_depth` every node is the digit `v % 10`
    (`N % 10 == 0`, so digits stay uniform). A draw maps to a node code
    (`DIGIT0 + digit`, or `16 + operator + 4 (arguments - 2)`), which indexes the
    other tables.
    """

    def __init__(self, max_args: int):
        C = 4 * (max_args - 1)
        self.N = 4 * math.lcm(C, 10)
        self.dtype = np.uint16 if self.N <= 2**16 else np.uint32
        v = np.arange(self.N)
        is_op = v >= 3 * self.N // 4
        w = (v - 3 * self.N // 4) % C
        code_dtype = np.uint8 if 16 + C <= 256 else np.uint16
        self.code = np.where(is_op, 16 + w, DIGIT0 + v % 10).astype(code_dtype)
        self.leaf_code = (DIGIT0 + v % 10).astype(code_dtype)
        c = np.arange(16 + C)
        is_op = c >= 16
        op = np.where(is_op, (c - 16) % 4, -1)
        a = np.where(is_op, 2 + (c - 16) // 4, 0)
        self.arity = a
        self.growth = np.where(is_op, 1 + a, 0)  # an operator adds its `]` and its children
        self.token = np.where(is_op, OP0 + op, c).astype(np.int32)
        self.digit = np.where(is_op, 0, c - DIGIT0)
        self.op = op


@functools.lru_cache(maxsize=8)
def _tables(max_args: int) -> _Tables:
    return _Tables(max_args)


class _Streams:
    """The draws of several examples, each from its own generator.

    Example `k` draws from `PCG64(SeedSequence([seed, split, index_k]))` in chunks
    of `chunk` integers, and its nodes use them in order, one level of one batch of
    trees at a time. A level needing more draws than its example's chunk has left
    takes a fresh chunk (of `max(chunk, need)` draws) and drops the rest: which
    draws a node gets depends only on its own example's earlier draws, so examples
    are independent of how they are grouped, and every node's draw is a fresh
    uniform one. All chunks live in one pool, so a level's draws are one gather.
    """

    def __init__(self, seed: int, sid: int, indices: list[int], tables: _Tables, chunk: int):
        self.tables = tables
        self.chunk = chunk
        self.rngs = [
            np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, sid, i]))) for i in indices
        ]
        E = len(indices)
        self.pool = np.concatenate([self._draw(k, chunk) for k in range(E)])
        self.base = np.arange(E, dtype=np.intp) * chunk
        self.cap = np.full(E, chunk, np.intp)  # room of each example's place in the pool
        self.size = self.cap.copy()  # draws of its current chunk
        self.used = np.zeros(E, np.intp)

    def _draw(self, k: int, n: int) -> np.ndarray:
        return self.rngs[k].integers(0, self.tables.N, n, dtype=self.tables.dtype)

    def take(self, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The next `counts[i]` draws of example `rows[i]`, concatenated in row order."""
        short = np.flatnonzero(self.used[rows] + counts > self.size[rows])
        if short.size:
            grown = []
            end = self.pool.size
            for i in short.tolist():
                k = int(rows[i])
                n = max(self.chunk, int(counts[i]))
                fresh = self._draw(k, n)
                if n <= self.cap[k]:
                    self.pool[self.base[k] : self.base[k] + n] = fresh
                else:  # rare: a level larger than a chunk
                    grown.append(fresh)
                    self.base[k], self.cap[k] = end, n
                    end += n
                self.size[k], self.used[k] = n, 0
            if grown:
                self.pool = np.concatenate([self.pool, *grown])
        first = self.base[rows] + self.used[rows]
        idx = np.repeat(first - _exclusive_cumsum(counts), counts) + np.arange(int(counts.sum()))
        self.used[rows] += counts
        return self.pool[idx]


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.size, np.intp)
    np.cumsum(x[:-1], out=out[1:])
    return out


def _grow(streams: _Streams, rows: np.ndarray, cfg: ListOpsConfig, B: int):
    """Draw `B` independent trees for each example `rows[k]`, breadth-first.

    Tree `k * B + b` is attempt `b` of example `rows[k]`; an example's trees use
    its own draws only, level by level in tree order. A tree is pruned as soon as
    its token count must reach `max_length`. Returns per level `(tree ids, codes)`
    (nodes grouped by tree in tree order; the children of a level's operators are
    the next level's nodes, in order) and which trees are acceptable.
    """
    tables = streams.tables
    E = rows.size
    T = E * B
    row_edges = np.arange(E + 1) * B
    trees = np.arange(T, dtype=np.intp)
    # Tokens so far plus one per pending child: the least final length. A digit adds
    # nothing (it fills its pending slot); an operator adds its `]` and its children.
    bound = np.ones(T, np.intp)
    levels = []
    for depth in range(1, cfg.max_depth + 1):
        if trees.size == 0:
            break
        v = streams.take(rows, np.diff(np.searchsorted(trees, row_edges)))
        if depth == cfg.max_depth:
            levels.append((trees, tables.leaf_code[v]))
            break
        code = tables.code[v]
        levels.append((trees, code))
        ops = np.flatnonzero(code >= 16)
        t, c = trees[ops], code[ops]
        bound += np.bincount(t, weights=tables.growth[c], minlength=T).astype(np.intp)
        arity = tables.arity[c]
        arity[bound[t] >= cfg.max_length] = 0  # pruned: no more levels
        trees = np.repeat(t, arity)
    ok = (bound > cfg.min_length) & (bound < cfg.max_length)
    return levels, ok


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of `arange(lo[i], hi[i])`."""
    n = hi - lo
    return np.repeat(lo - _exclusive_cumsum(n), n) + np.arange(int(n.sum()))


def _serialize(tables: _Tables, levels, chosen: np.ndarray):
    """Token ids, values and depths of the trees `chosen` (sorted tree ids).

    Returns `(tokens, offsets, values, depths)`: tree `chosen[j]` is
    `tokens[offsets[j]:offsets[j + 1]]`.
    """
    codes = []
    depths = np.zeros(chosen.size, np.intp)  # levels in which each tree has nodes
    for trees, code in levels:
        lo, hi = np.searchsorted(trees, chosen), np.searchsorted(trees, chosen + 1)
        idx = _ranges(lo, hi)
        if idx.size == 0:
            break
        depths += hi > lo
        codes.append(code[idx])
    # Bottom-up: token counts and values. The deepest level holds only digits.
    n_levels = len(codes)
    sizes, values, segs = ([None] * n_levels for _ in range(3))
    for d in range(n_levels - 1, -1, -1):
        c = codes[d]
        size = np.ones(c.size, np.intp)
        value = tables.digit[c]
        if d + 1 < n_levels:
            ops = np.flatnonzero(c >= 16)
            a = tables.arity[c[ops]]
            starts = _exclusive_cumsum(a)
            segs[d] = (ops, a, starts)
            size[ops] = 2 + np.add.reduceat(sizes[d + 1], starts)
            args = values[d + 1]
            op = tables.op[c[ops]]
            med = np.zeros(ops.size, np.intp)
            m = np.flatnonzero(op == 2)
            if m.size:
                # Sort each median's arguments: key = its rank among the medians * 16 + value.
                am = a[m]
                arg = _ranges(starts[m], starts[m] + am)
                srt = np.sort(np.repeat(np.arange(m.size) * 16, am) + args[arg]) & 15
                s = _exclusive_cumsum(am)
                med[m] = (srt[s + (am - 1) // 2] + srt[s + am // 2]) // 2
            value[ops] = np.choose(
                op,
                (
                    np.minimum.reduceat(args, starts),
                    np.maximum.reduceat(args, starts),
                    med,
                    np.add.reduceat(args, starts) % 10,
                ),
            )
        sizes[d], values[d] = size, value
    # Top-down: where each node starts in the output.
    offsets = np.zeros(chosen.size + 1, np.intp)
    np.cumsum(sizes[0], out=offsets[1:])
    tokens = np.empty(int(offsets[-1]), np.int32)
    start = offsets[:-1]
    for d, c in enumerate(codes):
        tokens[start] = tables.token[c]
        if d + 1 < n_levels:
            ops, a, starts = segs[d]
            tokens[start[ops] + sizes[d][ops] - 1] = CLOSE
            cs = sizes[d + 1]
            before = np.cumsum(cs) - cs  # tokens of the level's earlier nodes
            start = np.repeat(start[ops] + 1 - before[starts], a) + before
    return tokens, offsets, values[0], depths


# Trees drawn per example and batch, divided by the share of tree space the split
# owns. About 8% of LRA trees have an acceptable length, so the first batch usually
# holds one; an example without one draws a batch twice as large.
_BATCH = 16
_MAX_BATCH = 1 << 12
_MAX_ROUNDS = 40
# Examples per vectorized call when writing a cache (throughput levels off beyond).
_GROUP = 512


def generate_listops_batch(
    seed: int, split: str | int, indices: Sequence[int], config: ListOpsConfig | None = None
) -> list[ListOpsExample]:
    """`[generate_listops(seed, split, i, config) for i in indices]`, vectorized across
    the examples (several times faster than one at a time for 32 or more)."""
    cfg = LRA_LISTOPS if config is None else config
    sid = split_id(split)
    indices = [int(i) for i in indices]
    if any(i < 0 for i in indices):
        raise ValueError(f"expected indices >= 0, got {min(indices)}")
    if not indices:
        return []
    tables = _tables(cfg.max_args)
    lo, hi = SPLIT_BUCKETS[_split_name(sid)]
    B = B0 = math.ceil(_BATCH / (hi - lo))
    streams = _Streams(int(seed), sid, indices, tables, chunk=128 * B0)
    results: list[ListOpsExample | None] = [None] * len(indices)
    rows = np.arange(len(indices))
    for _ in range(_MAX_ROUNDS):
        if rows.size == 0:
            return results  # type: ignore[return-value]
        levels, ok = _grow(streams, rows, cfg, B)
        done = np.zeros(rows.size, bool)
        cand = np.flatnonzero(ok)
        # Each row's first acceptable tree that the split owns. Trees are written out
        # to be hashed: first one candidate per row (enough for most train rows),
        # then every remaining candidate of the rows still open.
        row = cand // B
        head = np.ones(cand.size, bool)
        head[1:] = row[1:] != row[:-1]
        for sel in (cand[head], cand[~head]):
            sel = sel[~done[sel // B]]
            if sel.size == 0:
                continue
            tokens, offsets, values, depths = _serialize(tables, levels, sel)
            bounds = offsets.tolist()
            for j, t in enumerate(sel.tolist()):
                k = t // B
                if done[k]:
                    continue
                tree = tokens[bounds[j] : bounds[j + 1]]
                if _bucket(tree) == sid:
                    done[k] = True
                    results[rows[k]] = ListOpsExample(
                        tokens=tree.copy(), label=int(values[j]), depth=int(depths[j])
                    )
        rows = rows[~done]
        # Further attempts are independent of the failed ones: the distribution stays exact.
        B = min(2 * B, _MAX_BATCH)
    raise ValueError(
        f"no acceptable tree in {_MAX_ROUNDS} batches (up to {_MAX_BATCH} trees each) for "
        f"example {indices[int(rows[0])]}: the configuration {cfg} keeps (almost) no tree"
    )


def generate_listops(
    seed: int, split: str | int, index: int, config: ListOpsConfig | None = None
) -> ListOpsExample:
    """Generate example `index` of `split` for seed `seed`: a pure function of its arguments.

    **Arguments:**

    - `seed`, `split` (`"train"`, `"val"`, `"test"` or 0, 1, 2), `index` (>= 0): the example.
    - `config`: grammar and length bounds (default: LRA's, `ListOpsConfig()`).

    **Returns:**

    A `ListOpsExample`: `tokens` int32 ids (`VOCAB`, no padding), `label` (the value
    of the tree, `0..9`) and `depth` (levels; the root is level 1).

    Many examples are faster with `generate_listops_batch`, which gives the same ones.
    """
    if int(index) < 0:
        raise ValueError(f"expected index >= 0, got {index}")
    return generate_listops_batch(seed, split, [index], config)[0]


def _pad(tokens: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.zeros(seq_len, np.int32)
    inputs[: tokens.size] = tokens
    mask = np.zeros(seq_len, bool)
    mask[: tokens.size] = True
    return inputs, mask


def _check_seq_len(seq_len: int, cfg: ListOpsConfig) -> int:
    seq_len = int(seq_len)
    if seq_len < cfg.longest:
        raise ValueError(
            f"expected a padded length (max_length / seq_len) >= {cfg.longest} "
            f"(the longest tree), got {seq_len}"
        )
    return seq_len


def default_split_size(split: str) -> int:
    return DEFAULT_SPLIT_SIZES[split]


class ListOpsSource:
    """Random-access source generating ListOps examples on the fly.

    `source[i]` is `dict(inputs, label, mask)`: `inputs` int32 `(seq_len,)` token
    ids (`VOCAB`) padded with 0, `mask` bool `(seq_len,)` True at the tokens, and
    `label` int32 in `0..9`. Example `i` is `generate_listops(seed, split, i, config)`.
    One example at a time is a few hundred per second and core: for training, write
    a cache once (`write_listops`, thousands per second) and read it.
    """

    def __init__(
        self,
        split: str,
        *,
        seed: int = 0,
        size: int | None = None,
        seq_len: int = DEFAULT_SEQ_LEN,
        config: ListOpsConfig | None = None,
    ):
        split_id(split)
        self.config = LRA_LISTOPS if config is None else config
        self.split = split
        self.seed = int(seed)
        if self.seed < 0:  # here, not in a worker's first item
            raise ValueError(f"expected a data seed >= 0, got {seed}")
        self.size = default_split_size(split) if size is None else int(size)
        if self.size < 0:
            raise ValueError(f"expected size >= 0, got {size}")
        self.seq_len = _check_seq_len(seq_len, self.config)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        i = check_index(i, self.size)
        ex = generate_listops(self.seed, self.split, i, self.config)
        inputs, mask = _pad(ex.tokens, self.seq_len)
        return {"inputs": inputs, "label": np.int32(ex.label), "mask": mask}

    def __repr__(self):
        return f"ListOpsSource(split={self.split!r}, seed={self.seed}, n={self.size}, seq_len={self.seq_len})"


# -- memory-mapped cache --------------------------------------------------------------

METADATA = "metadata.json"
DEFAULT_FRACTIONS = (0.96, 0.02, 0.02)


class ListOpsCacheNotFoundError(FileNotFoundError):
    """A ListOps cache directory lacks its files; the message says how to write it."""


def _split_sizes(size: int, splits: Sequence[float]) -> dict[str, int]:
    if len(splits) != 3 or any(f < 0 for f in splits) or not math.isclose(sum(splits), 1.0):
        raise ValueError(f"expected three non-negative split fractions summing to 1, got {tuple(splits)}")
    val = round(size * splits[1])
    test = round(size * splits[2])
    return {"train": size - val - test, "val": val, "test": test}


def _empty_splits(size: int, splits: Sequence[float]) -> list[str]:
    """The splits with a fraction > 0 that get no example out of `size` (a fraction
    of 0 asks for an empty split)."""
    counts = _split_sizes(size, splits)
    return [s for s, f in zip(counts, splits, strict=True) if f > 0 and counts[s] < 1]


_FILES = ("tokens", "lengths", "labels")


def _path(out_dir: str, split: str, what: str, tmp: bool = False) -> str:
    return os.path.join(out_dir, f"{split}_{what}.npy" + (".tmp" if tmp else ""))


def _write_chunk(job):
    out_dir, cfg, seed, split, start, stop = job
    tokens = np.load(_path(out_dir, split, "tokens", True), mmap_mode="r+")
    lengths = np.load(_path(out_dir, split, "lengths", True), mmap_mode="r+")
    labels = np.load(_path(out_dir, split, "labels", True), mmap_mode="r+")
    for g in range(start, stop, _GROUP):
        examples = generate_listops_batch(seed, split, range(g, min(stop, g + _GROUP)), cfg)
        for i, ex in enumerate(examples, g):
            tokens[i, : ex.tokens.size] = ex.tokens
            tokens[i, ex.tokens.size :] = PAD
            lengths[i] = ex.tokens.size
            labels[i] = ex.label
    for a in (tokens, lengths, labels):
        a.flush()
    del tokens, lengths, labels
    return stop - start


def _dedupe(out_dir: str, cfg: ListOpsConfig, seed: int, split: str, n: int, limit: int) -> dict[str, int]:
    """Replace repeated trees of one (temporary) split by unused examples `n, n+1, ...`.

    Returns `{index: generator index}` of the replaced rows.
    """
    tokens = np.load(_path(out_dir, split, "tokens", True), mmap_mode="r+")
    lengths = np.load(_path(out_dir, split, "lengths", True), mmap_mode="r+")
    labels = np.load(_path(out_dir, split, "labels", True), mmap_mode="r+")
    seen: set[bytes] = set()
    replaced: dict[str, int] = {}
    spare = n
    for i in range(n):
        while True:
            key = tokens[i, : lengths[i]].tobytes()
            if key not in seen:
                seen.add(key)
                break
            if spare - n >= limit:
                raise ValueError(
                    f"could not find {n} distinct ListOps trees for split {split!r} after {limit} "
                    f"extra draws: the configuration {cfg} allows too few trees"
                )
            ex = generate_listops(seed, split, spare, cfg)
            tokens[i, : ex.tokens.size] = ex.tokens
            tokens[i, ex.tokens.size :] = PAD
            lengths[i] = ex.tokens.size
            labels[i] = ex.label
            replaced[str(i)] = spare
            spare += 1
    for a in (tokens, lengths, labels):
        a.flush()
    return replaced


def _settings(meta: dict) -> dict:
    keys = ("seed", "splits", "config", "generator_version")
    return {k: meta.get(k) for k in keys}


def _rewrite_advice(directory: str) -> str:
    return f"write the cache again with `seqkit data listops --size N --out {directory} --overwrite`"


def read_listops_metadata(directory: str | os.PathLike) -> dict:
    """The metadata of a cache written by `write_listops`.

    `ListOpsCacheNotFoundError` if absent; `DataError` if it is not the JSON object
    `write_listops` writes.
    """
    directory = expand_path(directory)
    path = os.path.join(directory, METADATA)
    advice = _rewrite_advice(directory)
    if not os.path.isfile(path):
        raise ListOpsCacheNotFoundError(
            f"no ListOps cache in {directory} ({path} is missing); write one with "
            f"`seqkit data listops --size N --out {directory}`"
        )
    meta = read_json_file(path, advice)
    if reason := other_kind(meta, path, "listops", "listops"):
        raise DataError(reason)  # no advice to overwrite: that would destroy the other cache
    splits = meta.get("splits") if isinstance(meta, dict) else None
    config = meta.get("config") if isinstance(meta, dict) else None
    if not (
        isinstance(meta, dict)
        and meta.get("kind") == "listops"
        and isinstance(splits, dict)
        and all(type(splits.get(s)) is int and splits[s] >= 0 for s in SPLIT_IDS)
        and isinstance(config, dict)
        and set(config) == {f.name for f in dataclasses.fields(ListOpsConfig)}
    ):
        text = " ".join(repr(meta).split())[:120]
        raise DataError(
            f"{path}: expected the JSON object write_listops writes (kind 'listops', 'splits', "
            f"'config'), got {text}; {advice}"
        )
    return meta


def write_listops(
    out_dir: str | os.PathLike,
    size: int = sum(DEFAULT_SPLIT_SIZES.values()),
    *,
    seed: int = 0,
    splits: Sequence[float] = DEFAULT_FRACTIONS,
    config: ListOpsConfig | None = None,
    workers: int = 1,
    chunk: int = 1024,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write a memory-mapped ListOps cache of `size` examples split train/val/test.

    Writes, per split, `{split}_tokens.npy` (`(N, max_length - 1)` uint8 ids padded
    with 0), `{split}_lengths.npy` (`(N,)` int32) and `{split}_labels.npy` (`(N,)`
    uint8), under temporary names renamed at the end, then `metadata.json` (last:
    a directory with metadata holds a complete cache). On a failure the temporary
    files (and the directory, if this call created it) are removed; a cache that
    was there before is left as it was. Row `i` of a split is
    `generate_listops(seed, split, i, config)`, except the rare rows listed in the
    metadata's `replaced` (a tree repeated within the split, replaced by the next
    unused example; splits never share trees).

    **Arguments:**

    - `out_dir`: target directory (created if needed).
    - `size`: total number of examples (default 100k); `splits`: train/val/test
      fractions (default 0.96/0.02/0.02, LRA's 96k/2k/2k). Every split with a
      fraction > 0 must get an example, else `ValueError`; a fraction of 0 gives
      an empty split.
    - `seed`: the data seed; `config`: the grammar (default LRA's).
    - `workers`: processes generating chunks of `chunk` examples in parallel.
    - `overwrite`: write even where a cache exists. Without it, a cache with the
      same settings is kept as it is, and one with other settings is refused
      (`ValueError` showing both).
    - `progress`: called as `progress(done, total)` after every chunk.

    **Returns:**

    The metadata dictionary of the cache.
    """
    cfg = LRA_LISTOPS if config is None else config
    size, seed = int(size), int(seed)
    if size < 1:
        raise ValueError(f"expected size >= 1, got {size}")
    if seed < 0:
        raise ValueError(f"expected a data seed >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"expected workers >= 1, got {workers}")
    if chunk < 1:
        raise ValueError(f"expected chunk >= 1, got {chunk}")
    counts = _split_sizes(size, splits)
    if _empty_splits(size, splits):
        n = size + 1  # rounding makes the least size no closed form: count up to it
        while _empty_splits(n, splits):
            n += 1
        raise ValueError(
            f"expected a size that gives every split with a fraction > 0 an example (at least {n}), "
            f"got {counts} from size {size} and fractions {tuple(splits)}"
        )
    settings = {
        "seed": seed,
        "splits": counts,
        "config": dataclasses.asdict(cfg),
        "generator_version": GENERATOR_VERSION,
    }
    out_dir = expand_path(out_dir)
    meta_path = os.path.join(out_dir, METADATA)
    if reason := other_cache(out_dir, METADATA, "listops", "listops"):
        raise ValueError(reason)  # overwrite=True or not
    if os.path.isfile(meta_path) and not overwrite:
        meta = read_listops_metadata(out_dir)
        check_same_settings(out_dir, "ListOps", _settings(meta), settings)
        return meta
    created = not os.path.exists(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    try:
        replaced = _write_arrays(out_dir, cfg, seed, counts, workers, chunk, progress)
    except BaseException:
        # Leave nothing behind but a cache that was there before.
        for split in counts:
            for what in _FILES:
                tmp = _path(out_dir, split, what, True)
                if os.path.exists(tmp):
                    os.remove(tmp)
        if created and not os.listdir(out_dir):
            os.rmdir(out_dir)
        raise
    # The old cache (if any) stays complete until here.
    if os.path.exists(meta_path):
        os.remove(meta_path)
    for split in counts:
        for what in _FILES:
            os.replace(_path(out_dir, split, what, True), _path(out_dir, split, what))
    meta = {
        "kind": "listops",
        **settings,
        "seq_len": cfg.longest,
        "vocab": list(VOCAB),
        "split_buckets": {k: list(v) for k, v in SPLIT_BUCKETS.items()},
        "replaced": replaced,
    }
    tmp = meta_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, meta_path)
    return meta


def _write_arrays(out_dir, cfg, seed, counts, workers, chunk, progress) -> dict:
    """Generate every split into temporary arrays; returns the rows replaced as repeats."""
    size = sum(counts.values())
    width = cfg.longest
    jobs = []
    for split, n in counts.items():
        np.lib.format.open_memmap(_path(out_dir, split, "tokens", True), "w+", np.uint8, (n, width))
        np.lib.format.open_memmap(_path(out_dir, split, "lengths", True), "w+", np.int32, (n,))
        np.lib.format.open_memmap(_path(out_dir, split, "labels", True), "w+", np.uint8, (n,))
        for start in range(0, n, chunk):
            jobs.append((out_dir, cfg, seed, split, start, min(n, start + chunk)))
    done = 0
    if workers == 1:
        for r in map(_write_chunk, jobs):
            done += r
            if progress is not None:
                progress(done, size)
    else:
        import multiprocessing

        # spawn: the caller may hold JAX or grain threads, which fork does not survive.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for r in pool.imap_unordered(_write_chunk, jobs):
                done += r
                if progress is not None:
                    progress(done, size)
    return {split: _dedupe(out_dir, cfg, seed, split, n, limit=max(1000, n)) for split, n in counts.items()}


def is_listops_cache(meta: dict) -> bool:
    """Whether cache metadata describes a ListOps cache (`write_listops`'s)."""
    return cache_kind(meta) == "listops"


def check_listops_cache(meta: dict, directory: str, config: ListOpsConfig | None = None) -> ListOpsConfig:
    """The config of the cache `meta` describes (read by `read_listops_metadata`), after
    checking what a source requires of it: this generator version, and `config` when
    given. A `ValueError` that says how to write the cache again otherwise."""
    found_version = meta.get("generator_version")
    if found_version != GENERATOR_VERSION:
        raise ValueError(
            f"the ListOps cache in {directory} was written by generator version "
            f"{found_version}, this is version {GENERATOR_VERSION}; {_rewrite_advice(directory)}"
        )
    cached = ListOpsConfig(**meta["config"])
    if config is not None and config != cached:
        raise ValueError(
            f"the ListOps cache in {directory} was written with {cached}, not {config}; "
            f"{_rewrite_advice(directory)}"
        )
    return cached


def find_listops_cache(data_dir: str | os.PathLike, name: str = "listops") -> str:
    """The cache directory: `data_dir` itself or `data_dir/name`, whichever holds metadata."""
    data_dir = expand_path(data_dir)
    found = find_cache(data_dir, name, METADATA, is_listops_cache)
    if found is not None:
        return found
    raise ListOpsCacheNotFoundError(
        f"no ListOps cache in {data_dir} (neither {os.path.join(data_dir, METADATA)} nor "
        f"{os.path.join(data_dir, name, METADATA)} describes one); write one with "
        f"`seqkit data listops --size N --out {os.path.join(data_dir, name)}`, "
        f"or give no data directory to generate examples on the fly"
    )


class ListOpsCacheSource:
    """Random-access source over a cache written by `write_listops`; items as
    `ListOpsSource`'s.

    Refuses a cache whose grammar differs from `config` (when given) or that
    another generator version wrote. The metadata and arrays are checked when the
    source is built: a missing file raises `ListOpsCacheNotFoundError`, a truncated
    or corrupt one `DataError`. Holds only paths: the memory maps open lazily on
    first access, so the source pickles small (for grain worker processes).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        *,
        size: int | None = None,
        seq_len: int = DEFAULT_SEQ_LEN,
        config: ListOpsConfig | None = None,
    ):
        split_id(split)
        self.directory = expand_path(directory)
        self.split = split
        self.metadata = read_listops_metadata(self.directory)
        cached = check_listops_cache(self.metadata, self.directory, config)
        self.config = cached
        available = self.metadata["splits"][split]
        self._check_arrays(available)  # a bad file fails here, before any training
        self.size = split_size(size, available, split, f"the cached {split} split", LARGER_CACHE)
        self.seq_len = _check_seq_len(seq_len, cached)
        self._arrays = None

    def _check_arrays(self, n: int):
        advice = (
            f"write the cache again with `seqkit data listops --size N --out {self.directory} --overwrite`"
        )
        shapes = ((n, self.config.longest), (n,), (n,))
        for what, shape, dtype in zip(_FILES, shapes, (np.uint8, np.int32, np.uint8), strict=True):
            path = _path(self.directory, self.split, what)
            expected = f"a {shape} {np.dtype(dtype)} array ({METADATA} says {n} {self.split} examples)"
            if not os.path.exists(path):
                raise ListOpsCacheNotFoundError(f"{path} is missing: expected {expected}; {advice}")
            try:
                array = np.lib.format.open_memmap(path, mode="r")
            except (ValueError, EOFError) as e:  # a short or foreign file
                raise DataError(
                    f"{path} is not a readable .npy array (truncated or corrupt?): {one_line(e)}; "
                    f"expected {expected}; {advice}"
                ) from None
            found = (array.shape, array.dtype)
            del array
            if found != (shape, np.dtype(dtype)):
                raise DataError(f"{path}: expected {expected}, got {found[0]} {found[1]}; {advice}")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        i = check_index(i, self.size)
        if self._arrays is None:
            self._arrays = tuple(
                np.load(_path(self.directory, self.split, what), mmap_mode="r") for what in _FILES
            )
        tokens, lengths, labels = self._arrays
        n = int(lengths[i])
        inputs, mask = _pad(np.asarray(tokens[i, :n], np.int32), self.seq_len)
        return {"inputs": inputs, "label": np.int32(labels[i]), "mask": mask}

    def __repr__(self):
        return f"ListOpsCacheSource({self.directory!r}, split={self.split!r}, n={self.size})"
