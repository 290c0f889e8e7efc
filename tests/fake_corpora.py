"""Small corpora in the exact public file formats of the downloaded LRA datasets, for
tests that train recipes without downloads: CIFAR-10 (python archive batches),
IMDb (`aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`) and AAN (LRA's
`new_aan_pairs.{train,eval,test}.tsv`: label, id1, id2, text1, text2).

Each corpus is *learnable*: the label shows in the data in a way a small model finds
in a few hundred steps (brightness for CIFAR, a repeated word for IMDb, shared
vocabulary for AAN pairs), so "trains above chance" tests have a signal to find.
"""

import os
import pickle

import numpy as np


def write_cifar(root, *, per_batch: int = 200, n_test: int = 200, seed: int = 0) -> str:
    """`root/cifar-10-batches-py/` with 5 training batches and a test batch; an image
    of class c is noise around brightness 20 + 20·c. Returns `root`."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        data = np.clip(20 + 20 * labels[:, None] + rng.normal(0, 25, (n, 3072)), 0, 255).astype(np.uint8)
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(
                {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data}, f
            )
    return os.fspath(root)


_WORDS = ["the", "film", "plot", "actor", "scene", "story", "music", "ending", "cast", "script"]


def _text(rng, extra: str, n_words: int) -> str:
    words = list(rng.choice(_WORDS, n_words))
    for i in rng.choice(n_words, n_words // 4, replace=False):
        words[i] = extra
    return " ".join(words)


def write_imdb(root, *, per_class: int = 200, n_words: int = 40, seed: int = 0) -> str:
    """`root/aclImdb/` with `per_class` reviews per class and split; positive reviews
    say "great", negative ones "awful". Returns `root`."""
    rng = np.random.default_rng(seed)
    for part in ("train", "test"):
        for cls, word in (("pos", "great"), ("neg", "awful")):
            folder = os.path.join(root, "aclImdb", part, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                rating = 7 + i % 4 if cls == "pos" else 1 + i % 4
                with open(os.path.join(folder, f"{i}_{rating}.txt"), "w") as f:
                    f.write(_text(rng, word, n_words))
    return os.fspath(root)


_TOPICS = ["graph", "parse", "speech", "vision", "tensor", "logic"]


def write_aan(root, *, sizes=(400, 100, 100), n_words: int = 30, seed: int = 0) -> str:
    """`root/lra_release/lra_release/tsv_data/new_aan_pairs.*.tsv` (the layout of the
    extracted `lra_release.gz`); a pair is labelled 1 when both
    papers repeat the same topic word, 0 when their topics differ. Returns `root`."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "lra_release", "lra_release", "tsv_data")
    os.makedirs(folder, exist_ok=True)
    for name, n in zip(("train", "eval", "test"), sizes, strict=True):
        rows = []
        for i in range(n):
            label = int(rng.integers(0, 2))
            t1 = rng.choice(_TOPICS)
            t2 = t1 if label else rng.choice([t for t in _TOPICS if t != t1])
            text1, text2 = _text(rng, t1, n_words), _text(rng, t2, n_words)
            rows.append(f"{label}\tP{i:04d}\tW{i:04d}\t{text1}\t{text2}\n")
        with open(os.path.join(folder, f"new_aan_pairs.{name}.tsv"), "w") as f:
            f.writelines(rows)
    return os.fspath(root)
