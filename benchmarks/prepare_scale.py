"""Data preparation at scale (run from the repo root: ``python benchmarks/prepare_scale.py``).

The same real text at three sizes (default 0.25, 0.5 and 1 GB): the King James Bible, 30 verses to
a document, repeated with a per-copy prefix ("Copy k.") into a local JSON-lines file, read through
`corpus.source: hf` (the `json` builder, streamed), prepared as the pipeline does (a 2,048-token BPE
trained on the first tokenizer.train_bytes of the training split, then the tokens stage with one
worker process per core), each stage in a process of its own as the pipeline runs them.

Memory is the peak over both stages of the sum over the stage's process and its workers, of PSS
(proportional set size: a page shared by forked workers counts once, split among them) and, as an
upper bound, of RSS (a shared page counted in every process that maps it).

Goals (issue 20): peak memory <= 1.5 GB at 1 GB of text and within +25% of the 0.25 GB figure; the
tokens stage's tokens/s >= 70% of the same tokenizer's encode throughput on the same documents
(`encode_batch_fast` of an in-memory list, the tokenizer's own threads on every core), measured in
the same run right after, in a process of its own (its Encoding objects would dominate the RSS).
Prints one row per size and the ratios.
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


def stage(name: str, data_file: str, out: str, workers: int) -> dict:
    """One stage of the preparation in this process, as the pipeline runs it (each stage is a job)."""
    import logging

    from training.corpus import CorpusSpec
    from training.prepare import write_tokenizer, write_tokens

    logging.basicConfig(level=logging.WARNING)
    spec = CorpusSpec(source="hf", hf_name="json", hf_data_files=data_file, units_per_doc=1)
    t0 = time.perf_counter()
    if name == "tokenizer":
        write_tokenizer(spec, {"vocab_size": 2048}, out)
        return {"tokenizer_s": time.perf_counter() - t0}
    meta = write_tokens(spec, out, out, workers=workers, progress=False)
    return {"tokens": meta["n_tokens_train"] + meta["n_tokens_val"], "tokens_s": time.perf_counter() - t0}


def encode_baseline(data_file: str, out: str, n_docs: int) -> dict:
    """The same tokenizer on the same (first n_docs) documents, held in memory, encoded by
    `encode_batch_fast` with the tokenizer's own threads on every core, 1,000 documents a call."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from training.corpus import CorpusSpec, iter_documents
    from training.tokenizer import load_tokenizer

    tok = load_tokenizer(Path(out) / "tokenizer.json")
    spec = CorpusSpec(source="hf", hf_name="json", hf_data_files=data_file, units_per_doc=1)
    docs = [d for _, d in zip(range(n_docs), iter_documents(spec))]
    t0 = time.perf_counter()
    n = sum(len(e.ids) + 1 for i in range(0, len(docs), 1000)  # + the eos the tokens stage appends
            for e in tok.encode_batch_fast(docs[i: i + 1000], add_special_tokens=False))
    return {"encode_tok_per_s": n / (time.perf_counter() - t0), "encode_docs": len(docs)}


def _in_process(func: str, args: tuple, result_file: Path) -> subprocess.Popen:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.prepare_scale import {func}; "
            f"json.dump({func}(*{args!r}), open({str(result_file)!r}, 'w'))")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)


def sampled(proc: subprocess.Popen) -> tuple[float, float]:
    """Wait for `proc`; the peaks of the summed RSS and the summed PSS (shared pages counted once) of it and
    its workers, sampled every 0.2 s."""
    peak, stop = [0, 0], threading.Event()

    def sample():
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                tree = [p] + p.children(recursive=True)
                mem = [q.memory_full_info() for q in tree]
                peak[0] = max(peak[0], sum(m.rss for m in mem))
                peak[1] = max(peak[1], sum(m.pss for m in mem))
            except psutil.Error:
                pass
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    proc.wait()
    stop.set()
    t.join()
    if proc.returncode:
        raise SystemExit(f"{proc.args} failed ({proc.returncode})")
    return peak[0] / 1e9, peak[1] / 1e9


def run_size(data_file: Path, workers: int, encode_docs: int) -> dict:
    """Both stages, each in a fresh process with its memory sampled; then the baseline in another."""
    with tempfile.TemporaryDirectory(dir=data_file.parent) as out:
        result_file = Path(out) / "result.json"
        result, rss, pss = {}, 0.0, 0.0
        for name in ("tokenizer", "tokens"):
            r, p = sampled(_in_process("stage", (name, str(data_file), out, workers), result_file))
            rss, pss = max(rss, r), max(pss, p)
            result.update(json.loads(result_file.read_text()))
        result.update(prep_tok_per_s=result["tokens"] / result["tokens_s"],
                      end_to_end_tok_per_s=result["tokens"] / (result["tokens_s"] + result["tokenizer_s"]))
        if _in_process("encode_baseline", (str(data_file), out, encode_docs), result_file).wait():
            raise SystemExit(f"the encode baseline on {data_file} failed")
        return {**result, **json.loads(result_file.read_text()), "peak_rss_gb": rss, "peak_pss_gb": pss}


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
              f"{r['tokens_s']:.0f} s; peak memory {r['peak_pss_gb']:.2f} GB PSS ({r['peak_rss_gb']:.2f} GB summed RSS); "
              f"tokens stage {r['prep_tok_per_s'] / 1e6:.3f}M tok/s, with the tokenizer {r['end_to_end_tok_per_s'] / 1e6:.3f}M "
              f"tok/s; encode_batch_fast {r['encode_tok_per_s'] / 1e6:.3f}M tok/s; "
              f"ratio {r['prep_tok_per_s'] / r['encode_tok_per_s']:.2f}", flush=True)
    first, last = rows[0][1], rows[-1][1]
    for key, what in (("peak_pss_gb", "PSS"), ("peak_rss_gb", "summed RSS")):
        print(f"memory ({what}): {last[key]:.2f} GB at {rows[-1][0]:g} GB of text (goal <= 1.5), "
              f"{last[key] / first[key]:.2f}x the {rows[0][0]:g} GB figure (goal <= 1.25)")
    print(f"throughput: tokens stage / encode = {min(r['prep_tok_per_s'] / r['encode_tok_per_s'] for _, r in rows):.2f} "
          "at worst (goal >= 0.70)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
