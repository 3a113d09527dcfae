"""Data preparation at scale (run from the repo root: ``python benchmarks/prepare_scale.py``).

The same real text at three sizes (default 0.25, 0.5 and 1 GB): the King James Bible, 30 verses to
a document, repeated with a per-copy prefix ("Copy k.") into a local JSON-lines file, read through
`corpus.source: hf` (the `json` builder, streamed), prepared as the pipeline does (a 2,048-token BPE
trained on the first tokenizer.train_bytes of the training split, then the tokens stage with one
worker process per core). Each size runs in a fresh process; the peak RSS is the largest sum over
that process and its workers, sampled every 0.1 s.

Goals (issue 20): peak RSS <= 1.5 GB at 1 GB of text and within +25% of the 0.25 GB figure; the
tokens stage's tokens/s >= 70% of the same tokenizer's encode throughput on the same documents
(`encode_batch_fast` of an in-memory list, the tokenizer's own threads on every core), measured in
the same process right after. Prints one row per size and the ratios.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_text(path: Path, target_bytes: float) -> dict:
    """KJV copies with a per-copy prefix until the file holds `target_bytes` of JSON lines."""
    from training.corpus import kjv_units, make_documents

    docs = make_documents(kjv_units(), 30)
    n = k = 0
    with open(path, "w") as f:
        while n < target_bytes:
            for d in docs:
                line = json.dumps({"text": f"Copy {k}. {d}"}) + "\n"
                f.write(line)
                n += len(line)
            k += 1
    return {"bytes": n, "copies": k}


def child(data_file: str, out: str, workers: int, encode_docs: int) -> dict:
    """One preparation in this process; then the encode baseline on the first `encode_docs` documents."""
    import logging

    from training.corpus import CorpusSpec, iter_documents
    from training.prepare import write_tokenizer, write_tokens
    from training.tokenizer import load_tokenizer

    logging.basicConfig(level=logging.WARNING)
    spec = CorpusSpec(source="hf", hf_name="json", hf_data_files=data_file, units_per_doc=1)
    t0 = time.perf_counter()
    write_tokenizer(spec, {"vocab_size": 2048}, out)
    t1 = time.perf_counter()
    meta = write_tokens(spec, out, out, workers=workers, progress=False)
    t2 = time.perf_counter()
    n_tokens = meta["n_tokens_train"] + meta["n_tokens_val"]
    # baseline: the same tokenizer on the same documents, in memory, with its own threads on every core
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    tok = load_tokenizer(Path(out) / "tokenizer.json")
    docs = [d for _, d in zip(range(encode_docs), iter_documents(spec))]
    t3 = time.perf_counter()
    enc = tok.encode_batch_fast(docs, add_special_tokens=False)
    t4 = time.perf_counter()
    base = sum(len(e.ids) + 1 for e in enc)  # with the eos the tokens stage appends
    return {"tokens": n_tokens, "tokenizer_s": t1 - t0, "tokens_s": t2 - t1,
            "prep_tok_per_s": n_tokens / (t2 - t1), "end_to_end_tok_per_s": n_tokens / (t2 - t0),
            "encode_tok_per_s": base / (t4 - t3), "encode_docs": len(docs)}


def run_size(data_file: Path, workers: int, encode_docs: int) -> dict:
    """Run `child` in a fresh process, sampling the RSS of it and its workers."""
    with tempfile.TemporaryDirectory(dir=data_file.parent) as out:
        result_file = Path(out) / "result.json"
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.prepare_scale import child; "
                f"json.dump(child({str(data_file)!r}, {out!r}, {workers}, {encode_docs}), open({str(result_file)!r}, 'w'))")
        env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
        peak, stop = [0, 0], threading.Event()

        def sample():
            p = psutil.Process(proc.pid)
            while not stop.is_set():
                try:
                    tree = [p] + p.children(recursive=True)
                    rss = [q.memory_info().rss for q in tree]
                    peak[0], peak[1] = max(peak[0], sum(rss)), max(peak[1], max(rss))
                except psutil.Error:
                    pass
                time.sleep(0.1)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        proc.wait()
        stop.set()
        t.join()
        if proc.returncode:
            raise SystemExit(f"preparation of {data_file} failed ({proc.returncode})")
        return {**json.loads(result_file.read_text()), "peak_rss_gb": peak[0] / 1e9, "peak_rss_one_gb": peak[1] / 1e9}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 0.5, 1.0], help="GB of text")
    ap.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    ap.add_argument("--encode-docs", type=int, default=20_000, help="documents in the encode baseline")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "archscale-prepare-scale")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; workers {args.workers}")
    rows = []
    for gb in args.sizes:
        path = args.dir / f"kjv_{gb:g}GB.jsonl"
        if not path.exists():
            make_text(path, gb * 1e9)
        r = run_size(path, args.workers, args.encode_docs)
        rows.append((gb, r))
        print(f"{gb:g} GB: {r['tokens'] / 1e6:.0f}M tokens; tokenizer {r['tokenizer_s']:.0f} s, tokens stage "
              f"{r['tokens_s']:.0f} s; peak RSS {r['peak_rss_gb']:.2f} GB (largest process {r['peak_rss_one_gb']:.2f}); "
              f"tokens stage {r['prep_tok_per_s'] / 1e6:.3f}M tok/s, with the tokenizer {r['end_to_end_tok_per_s'] / 1e6:.3f}M "
              f"tok/s; encode_batch_fast {r['encode_tok_per_s'] / 1e6:.3f}M tok/s; "
              f"ratio {r['prep_tok_per_s'] / r['encode_tok_per_s']:.2f}", flush=True)
    first, last = rows[0][1], rows[-1][1]
    print(f"memory: {last['peak_rss_gb']:.2f} GB at {rows[-1][0]:g} GB of text (goal <= 1.5), "
          f"{last['peak_rss_gb'] / first['peak_rss_gb']:.2f}x the {rows[0][0]:g} GB figure (goal <= 1.25)")
    print(f"throughput: tokens stage / encode = {min(r['prep_tok_per_s'] / r['encode_tok_per_s'] for _, r in rows):.2f} "
          "at worst (goal >= 0.70)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
