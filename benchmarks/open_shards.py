"""Opening a billion-token shard set (run from the repo root: ``python benchmarks/open_shards.py``).

Builds once (in --dir) a prepared dataset of >= 1B training tokens: the default study's real KJV
tokens (a 2,048-token BPE) repeated, written through training.shards.ShardWriter in 100M-token
shards with their index, as the tokens stage writes them. Then times what every training job does
first, `training.shards.open_tokens` (index, sizes, sampled block checksums, token counts), and a
first training batch, each in a fresh process, five times.

Goal (issue 20): a training job opens a shard set of >= 1B tokens in under 2 s.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(out: Path, n_tokens: int) -> None:
    from archscale.files import write_json
    from training.corpus import CorpusSpec
    from training.evalset import token_counts
    from training.prepare import SHARD_TOKENS, prepare
    from training.shards import ShardWriter

    small = out / "kjv"
    meta = prepare(CorpusSpec(), {"vocab_size": 2048}, small, progress=False)
    from training.shards import open_tokens

    kjv = open_tokens(small)
    train = np.asarray(kjv.train)
    writers = {"train": ShardWriter(out / "shards", "train", np.uint16, SHARD_TOKENS),
               "val": ShardWriter(out / "shards", "val", np.uint16, SHARD_TOKENS)}
    reps = -(-n_tokens // len(train))
    for _ in range(reps):
        writers["train"].write(train)
    writers["val"].write(np.asarray(kjv.val))
    entries = {k: w.close() for k, w in writers.items()}
    counts = token_counts(train, meta["vocab_size"]) * reps
    np.save(out / "shards" / "train_counts.npy", counts)
    from training.tokenizer import file_sha256

    meta.update(splits=entries, n_tokens_train=entries["train"]["n_tokens"], n_tokens_val=entries["val"]["n_tokens"],
                train_sha256=entries["train"]["sha256"], val_sha256=entries["val"]["sha256"],
                train_counts={"file": "train_counts.npy", "sha256": file_sha256(out / "shards" / "train_counts.npy")})
    write_json(out / "meta.json", meta)


CHILD = """
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from training.shards import open_tokens
from training.data import train_batch
t1 = time.perf_counter()
data = open_tokens({out!r})
t2 = time.perf_counter()
batch = train_batch(data.train, 1, 32, 1024, 0)
t3 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "open": t2 - t1, "batch": t3 - t2, "tokens": len(data.train),
                  "shards": len(data.meta["splits"]["train"]["shards"])}}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=float, default=1.0e9)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "archscale-open-shards")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if not (args.dir / "meta.json").exists():
        t = time.perf_counter()
        build(args.dir, int(args.tokens))
        print(f"built {args.dir} in {time.perf_counter() - t:.0f} s")
    rows = []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), out=str(args.dir))],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout))
    r = rows[0]
    opens = sorted(x["open"] for x in rows)
    print(f"{r['tokens'] / 1e9:.2f}B training tokens in {r['shards']} shards: open_tokens {opens[0]:.3f}-{opens[-1]:.3f} s "
          f"(median {opens[len(opens) // 2]:.3f} s; goal < 2 s), first batch of 32 x 1024 "
          f"{np.median([x['batch'] for x in rows]):.3f} s, imports {np.median([x['imports'] for x in rows]):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
