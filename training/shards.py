"""Token shards: a split's tokens in fixed-size raw files, with an index, memory-mapped by every job.

A split (train, val) is written as `shards/<split>_NNNNNN.bin`: raw little-endian uint16 (uint32 when
the vocabulary needs it), `shard_tokens` tokens each, the last one shorter. The index (a split's
entry in meta.json, `ShardWriter.entry`) lists every shard with its token count, its sha256 and
the sha256 of each block of `block_tokens` tokens, all computed once while writing.

A job opens a split with `ShardSet.open`: it checks every shard's size against the index (a
truncated or missing shard is named in one line) and the checksums of a sample of blocks (each
shard's first and last block and `sample_blocks` more at random; every block when the set has no
more than that), and the ids in them against the vocabulary. It never hashes the whole set, so a
billion-token set opens in well under a second. `ShardSet` reads windows across shard boundaries:
`tokens[a:b]` is the same array whatever the shard size.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import InputError
from training.tokenizer import file_sha256, read_meta

BLOCK_TOKENS = 1 << 20  # tokens per checksummed block (2 MiB at uint16)
SAMPLE_BLOCKS = 16  # blocks verified at random per split, beyond each shard's first and last


def block_digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def shard_name(split: str, k: int) -> str:
    return f"{split}_{k:06d}.bin"


class ShardWriter:
    """Appends a split's tokens to fixed-size shards under `folder`; the shard being filled is
    `<name>.partial` until full. `state()` (JSON) is enough to resume: `ShardWriter(..., state=s)`
    truncates the partial shard to what `s` recorded and goes on from there."""

    def __init__(self, folder, split: str, dtype, shard_tokens: int, block_tokens: int = BLOCK_TOKENS,
                 state: dict | None = None):
        if shard_tokens < 1 or block_tokens < 1:
            raise InputError(f"shard_tokens={shard_tokens} and block_tokens={block_tokens} must be positive")
        self.folder, self.split, self.dtype = Path(folder), split, np.dtype(dtype)
        self.shard_tokens, self.block_tokens = shard_tokens, block_tokens
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = list((state or {}).get("shards", []))
        self._open_partial(int((state or {}).get("partial_tokens", 0)))

    @property
    def _partial_path(self) -> Path:
        return self.folder / (shard_name(self.split, len(self.shards)) + ".partial")

    def _open_partial(self, keep_tokens: int) -> None:
        path = self._partial_path
        keep = keep_tokens * self.dtype.itemsize
        if keep and (not path.exists() or path.stat().st_size < keep):
            raise InputError(f"{path} is shorter than its progress record; delete {self.folder} to prepare afresh")
        self.file = open(path, "r+b" if keep else "wb")
        self.file.truncate(keep)
        self.file.seek(keep)
        self.count = keep_tokens
        self.hash, self.blocks, self.block = hashlib.sha256(), [], bytearray()
        if keep:  # rebuild the checksums of what the partial shard holds
            self.file.seek(0)
            data = self.file.read(keep)
            self._digest(data)
            self.file.seek(keep)

    def _digest(self, data: bytes) -> None:
        self.hash.update(data)
        self.block += data
        size = self.block_tokens * self.dtype.itemsize
        while len(self.block) >= size:
            self.blocks.append(block_digest(memoryview(self.block)[:size]))
            del self.block[:size]

    def write(self, tokens: np.ndarray) -> int:
        """Append tokens; returns how many shards this call finished."""
        tokens = np.ascontiguousarray(tokens, dtype=self.dtype)
        finished = 0
        while len(tokens):
            take = min(len(tokens), self.shard_tokens - self.count)
            data = tokens[:take].tobytes()
            self.file.write(data)
            self._digest(data)
            self.count += take
            tokens = tokens[take:]
            if self.count == self.shard_tokens:
                self._finish()
                self._open_partial(0)
                finished += 1
        return finished

    def _finish(self) -> None:
        self.file.close()
        if self.block:
            self.blocks.append(block_digest(bytes(self.block)))
        name = shard_name(self.split, len(self.shards))
        os.replace(self._partial_path, self.folder / name)
        self.shards.append({"file": name, "tokens": self.count, "sha256": self.hash.hexdigest(), "blocks": self.blocks})

    def flush(self) -> None:
        self.file.flush()

    def state(self) -> dict:
        self.flush()
        return {"shards": self.shards, "partial_tokens": self.count}

    def close(self) -> dict:
        """Finish the last (shorter) shard; the split's index entry."""
        if self.count:
            self._finish()
        else:
            self.file.close()
            self._partial_path.unlink(missing_ok=True)
        return self.entry()

    def entry(self) -> dict:
        return {"n_tokens": sum(s["tokens"] for s in self.shards), "shard_tokens": self.shard_tokens,
                "block_tokens": self.block_tokens, "sha256": split_sha256(self.shards), "shards": self.shards}


def split_sha256(shards: list[dict]) -> str:
    """The identity of a split's token stream: the sha256 of its shards' sha256s in order."""
    h = hashlib.sha256()
    for s in shards:
        h.update(s["sha256"].encode())
    return h.hexdigest()


class ShardSet:
    """A split's shards as one read-only token sequence: len() and slicing `tokens[a:b]` (a copy)."""

    def __init__(self, arrays: list[np.ndarray], name: str = "tokens"):
        self.arrays, self.name = arrays, name
        self.starts = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
        self.dtype = arrays[0].dtype if arrays else np.dtype(np.uint16)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("ShardSet supports contiguous slices only")
        a, b, _ = index.indices(len(self))
        if b <= a:
            return np.empty(0, dtype=self.dtype)
        k = int(np.searchsorted(self.starts, a, side="right")) - 1
        lo = a - int(self.starts[k])
        if b <= self.starts[k + 1]:  # within one shard: the common case
            return np.array(self.arrays[k][lo: lo + (b - a)])
        parts, pos = [], a
        while pos < b:
            k = int(np.searchsorted(self.starts, pos, side="right")) - 1
            end = min(b, int(self.starts[k + 1]))
            parts.append(self.arrays[k][pos - int(self.starts[k]): end - int(self.starts[k])])
            pos = end
        return np.concatenate(parts)

    def __array__(self, dtype=None, copy=None):
        out = self[0:len(self)]
        return out.astype(dtype) if dtype is not None else out

    @classmethod
    def open(cls, root, entry: dict, dtype, vocab_size: int, split: str, sample_blocks: int = SAMPLE_BLOCKS,
             rng: np.random.Generator | None = None) -> "ShardSet":
        """Memory-map a split's shards (paths relative to `root`) after the cheap checks of the module
        docstring; one-line InputError naming the first bad shard."""
        root, dtype = Path(root), np.dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        fix = "delete it and rerun the tokens rule (snakemake --forcerun tokens)"
        arrays = []
        for s in entry["shards"]:
            path = root / "shards" / s["file"]
            try:
                size = path.stat().st_size
            except OSError:
                raise InputError(f"token shard {path} is missing; {fix}") from None
            if size != s["tokens"] * dtype.itemsize:
                raise InputError(f"token shard {path} has {size} bytes, its index says {s['tokens'] * dtype.itemsize} "
                                 f"({s['tokens']} tokens of {dtype}): truncated or foreign; {fix}")
            arrays.append(np.memmap(path, dtype=dtype, mode="r") if s["tokens"] else np.empty(0, dtype))
        block = entry["block_tokens"]
        # (shard, block) pairs: every shard's first and last block, and a random sample of the others
        every = [(k, j) for k, s in enumerate(entry["shards"]) for j in range(len(s["blocks"]))]
        ends = {(k, j) for k, s in enumerate(entry["shards"]) for j in {0, len(s["blocks"]) - 1} if s["blocks"]}
        rest = [p for p in every if p not in ends]
        if len(rest) > sample_blocks:
            rest = [rest[i] for i in rng.choice(len(rest), size=sample_blocks, replace=False)]
        for k, j in sorted(ends | set(rest)):
            data = np.asarray(arrays[k][j * block: (j + 1) * block])
            if block_digest(data.tobytes()) != entry["shards"][k]["blocks"][j]:
                raise InputError(f"token shard {root / 'shards' / entry['shards'][k]['file']} is corrupt (block {j} "
                                 f"does not match its checksum); {fix}")
            if len(data) and int(data.max()) >= vocab_size:
                raise InputError(f"token shard {root / 'shards' / entry['shards'][k]['file']} holds id {int(data.max())} "
                                 f">= vocab_size {vocab_size}: it does not match its tokenizer; {fix}")
        return cls(arrays, name=split)


@dataclass(frozen=True)
class TokenData:
    """A prepared dataset: its index (meta.json), both splits as ShardSets, the training split's token counts."""
    meta: dict
    train: ShardSet
    val: ShardSet
    train_counts: np.ndarray  # (vocab_size,) int64

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]

    @property
    def special_ids(self) -> list[int]:
        return sorted({self.meta[k] for k in ("bos_id", "eos_id", "pad_id", "mask_id")})


def open_tokens(data_dir, rng: np.random.Generator | None = None) -> TokenData:
    """Open a prepared dataset; one-line InputError (naming the file) if any part is missing or corrupt."""
    data_dir = Path(data_dir)
    meta = read_meta(data_dir / "meta.json")
    if "splits" not in meta:
        raise InputError(f"{data_dir / 'meta.json'} is not a shard index (an older format); rerun the tokens rule")
    splits = {name: ShardSet.open(data_dir, meta["splits"][name], meta["dtype"], meta["vocab_size"], name, rng=rng)
              for name in ("train", "val")}
    counts_path = data_dir / "shards" / meta["train_counts"]["file"]
    try:
        if file_sha256(counts_path) != meta["train_counts"]["sha256"]:
            raise InputError(f"{counts_path} does not match its checksum in meta.json; rerun the tokens rule")
        counts = np.load(counts_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {counts_path} ({e}); rerun the tokens rule") from None
    return TokenData(meta, splits["train"], splits["val"], counts)


def epochs(tokens_trained: int, train_split_tokens: int) -> float:
    """Passes over the training split that `tokens_trained` tokens make (windows are drawn with replacement,
    so this is the expected number of times each token was seen)."""
    return tokens_trained / max(1, train_split_tokens)
