"""Training jobs start longest first: each carries a Snakemake priority from its expected cost."""
import re
import shutil

import yaml

from snakemake_helpers import snakemake


def _priorities(text: str) -> dict:
    """{(rule, 'variant/size/seed/lr[/budget]'): priority} from a dry run's job listing."""
    out = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"(?:local)?rule (\w+):", block.strip())
        wc = re.search(r"wildcards: (.*)", block)
        if not rule or rule.group(1) not in ("stable", "cooldown") or not wc:
            continue
        w = dict(kv.split("=", 1) for kv in wc.group(1).split(", "))
        key = f"{w['variant']}/{w['size']}/seed{w['seed']}_lr{w['lr']}" + (f"/{w['budget']}" if "budget" in w else "")
        prio = re.search(r"priority: (\d+)", block)
        out[(rule.group(1), key)] = int(prio.group(1)) if prio else 0
    return out


def test_training_jobs_are_prioritised_by_expected_cost(root, tmp_path):
    from training.study import load_study

    shutil.copy(root / "tests" / "smoke" / "config.yaml", tmp_path / "config.yaml")
    out = snakemake(root, tmp_path, "-n", "--forceall")
    prio = _priorities(out.stdout + out.stderr)
    study = load_study(yaml.safe_load((tmp_path / "config.yaml").read_text()),
                       root / "workflow" / "schemas" / "config.schema.yaml")
    assert len([k for k in prio if k[0] == "stable"]) == len(study["stables"])
    assert len([k for k in prio if k[0] == "cooldown"]) == len(study["runs"])
    assert all(p >= 1 for p in prio.values()), prio  # the directive is active on every training job

    for s in study["stables"]:  # a stable run (80% of its longest budget) outranks each of its cooldowns
        cooldowns = [p for (rule, key), p in prio.items() if rule == "cooldown" and key.startswith(s["lineage"] + "/")]
        assert cooldowns and prio[("stable", s["lineage"])] >= max(cooldowns)

    # more steps and more FLOPs never rank lower
    stables = [(s["stable_tokens"], s["train_flops"], prio[("stable", s["lineage"])]) for s in study["stables"]]
    for tok_a, fl_a, p_a in stables:
        for tok_b, fl_b, p_b in stables:
            if tok_a >= tok_b and fl_a >= fl_b:
                assert p_a >= p_b
    assert len({p for *_, p in stables}) > 1  # and the costs differ
