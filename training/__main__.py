"""Train one run outside Snakemake (used by the fault-injection tests and for debugging).

    python -m training --variant gpt2 --size xs --data results/data/tokens --out /tmp/run \
        [--tokens N] [--seed S] [--lr LR] [--threads T] [--checkpoint-every K] [--set key=value ...]
"""
import argparse
import json
import logging
import sys

from training.errors import InputError
from training.loop import Preempted, TrainConfig, run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    p.add_argument("--variant", required=True)
    p.add_argument("--size", required=True)
    p.add_argument("--data", required=True, help="a prepared tokens folder (meta.json and shards/)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size-override", default="{}", help="JSON object of size fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config field (JSON value)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    fields = {}
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key] = json.loads(value)
    try:
        cfg = TrainConfig.from_dict(fields)
        info = run(args.variant, args.size, json.loads(args.size_override), cfg, args.data, args.out,
                   threads=args.threads)
    except InputError as e:
        print(f"archscale: {e}", file=sys.stderr)
        return 2
    except Preempted as e:
        print(f"archscale: preempted: {e}", file=sys.stderr)
        return 3
    print(json.dumps({k: info[k] for k in ("status", "steps_done", "resumed")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
