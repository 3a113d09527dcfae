"""The optional early-stop rule (analysis/forecast/early_stop.py): a stable run in progress is stopped only when every
budget that branches off it later is predicted confidently off a reference study's frontier."""
import numpy as np
import pandas as pd
import pytest

from analysis.forecast.early_stop import decide, frontier_at, protected, reference_frontier
from analysis.frontier.approaches import final_points
from analysis.forecast.predict import reference_runs
from analysis.synthetic import synthetic_wsd_runs

SYNTH = dict(variants=("a", "b"), seeds=(0, 1), n_sizes=4)


def _sizes(fin, r):
    """{size: N} of a run's budget (its variant, seed and budget)."""
    same = fin[(fin["variant"] == r["variant"]) & (fin["seed"] == r["seed"]) & (fin["budget"] == r["budget"])]
    return dict(zip(same["size"], same["params_nonembedding"]))


def _lineages(curves):
    """Per lineage of a synthetic study: ident, stable rows (of its longest budget) and its budgets."""
    fin = final_points(curves)
    out = []
    for lineage, g in fin.groupby(fin["run"].str.rsplit("/", n=1).str[0]):
        longest = curves[curves["run"] == g.sort_values("tokens")["run"].iloc[-1]]
        rows = longest[longest["phase"] == "stable"]
        budgets = [(r["budget"], float(curves[(curves["run"] == r["run"]) & (curves["phase"] == "stable")]["tokens"].max()),
                    float(r["flops"]), _sizes(fin, r)) for r in g.to_dict("records")]
        ident = {"run": f"{lineage}/stable", **{k: g.iloc[0][k] for k in ("variant", "objective", "size", "seed", "lr")}}
        out.append((ident, rows, budgets, g.set_index("budget")["loss"].to_dict()))
    return out


def test_the_frontier_is_each_budgets_best_final_loss_interpolated_never_extrapolated():
    curves = synthetic_wsd_runs(np.random.default_rng(0), **SYNTH)
    front = reference_frontier(curves)
    fin = final_points(curves)
    best = fin.groupby(["variant", "budget"])["loss"].min()
    assert np.allclose(front.set_index(["variant", "budget"])["loss"].sort_index(), best.sort_index())
    a = front[front["variant"] == "a"].sort_values("compute")
    c0, c1 = a["compute"].iloc[0], a["compute"].iloc[-1]
    assert frontier_at(front, "a", c0) == pytest.approx(a["loss"].iloc[0])
    assert np.isnan(frontier_at(front, "a", c0 / 2)) and np.isnan(frontier_at(front, "a", c1 * 2))
    # the same level a step below or above the reference's end (whole steps): inside, at the end's loss
    assert frontier_at(front, "a", c0 * 0.99) == pytest.approx(a["loss"].iloc[0])
    assert frontier_at(front, "a", c1 * 1.01) == pytest.approx(a["loss"].iloc[-1])
    assert np.isnan(frontier_at(front, "zzz", c0))
    with pytest.raises(ValueError, match="names no budgets"):
        reference_frontier(curves.assign(budget=""))


def test_runs_are_stopped_only_when_every_later_budget_is_off_the_frontier():
    """A new study drawn like the reference (another draw), judged on its predictions alone (no size lists, so
    no bracket is protected): the rule stops some lineages, saving their later budgets, and a stopped lineage's
    budgets would in truth have been off the reference frontier (at most one in twenty of them on it: the
    lower bound of a 90% interval is a 95% one-sided bound)."""
    curves = synthetic_wsd_runs(np.random.default_rng(1), **SYNTH)
    front, reference = reference_frontier(curves), reference_runs(curves)
    stopped, judged, wrong = 0, 0, 0
    for seed in (2, 3):
        new = synthetic_wsd_runs(np.random.default_rng(seed), **SYNTH)
        for ident, rows, budgets, actual in _lineages(new):
            seen = 0.3 * max(b for _, b, *_ in budgets)
            budgets = [(b, br, c, None) for b, br, c, _ in budgets]  # no size lists: nothing protected
            d = decide(reference, front, rows[rows["tokens"] <= seen], ident, budgets, seen)
            judged += 1
            assert set(d.table["budget"]) == {b for b, br, *_ in budgets if br > seen}
            if d.stop:
                stopped += 1
                assert d.table["off_frontier"].all() and not d.table["protected"].any()
                assert "predicted off the frontier" in d.reason
                truth = [actual[b] > frontier_at(front, ident["variant"], c) for b, br, c, _ in budgets if br > seen]
                wrong += sum(not t for t in truth)
            else:
                assert not (d.table["off_frontier"] & ~d.table["protected"]).all()
    assert judged == 32 and stopped >= 4, stopped
    assert wrong <= 0.05 * 2 * stopped + 1, wrong


def test_no_stop_without_a_confident_prediction():
    reference = synthetic_wsd_runs(np.random.default_rng(1), **SYNTH)
    front = reference_frontier(reference)
    ident, rows, budgets, _ = _lineages(synthetic_wsd_runs(np.random.default_rng(2), **SYNTH))[0]
    seen = 0.3 * max(b for _, b, *_ in budgets)
    early = rows[rows["tokens"] <= seen]
    # a variant the reference does not have: no drop model, no frontier
    d = decide(reference, front, early, {**ident, "variant": "zzz"}, budgets, seen)
    assert not d.stop and (d.table["status"] == "refused").all()
    # a frontier far above every prediction: never off it
    d = decide(reference, front.assign(loss=front["loss"] * 10), early, ident, budgets, seen)
    assert not d.stop and not d.table["off_frontier"].any() and "goes on: " in d.reason
    with pytest.raises(ValueError, match="margin"):
        decide(reference, front, early, ident, budgets, seen, margin=-0.1)
    with pytest.raises(ValueError, match="window ends at"):
        decide(reference, front, early, ident, budgets, seen / 3)  # checked before the windows are complete


def test_the_reference_run_of_the_same_lineage_is_left_out():
    """A reference holding the very lineage being judged: its runs do not calibrate its own prediction
    (changing that lineage's cooldowns in the reference leaves the prediction as it was)."""
    reference = synthetic_wsd_runs(np.random.default_rng(1), **SYNTH)
    front = reference_frontier(reference)
    ident, rows, budgets, _ = _lineages(reference)[0]
    seen = 0.3 * max(b for _, b, *_ in budgets)
    early = rows[rows["tokens"] <= seen]
    base = decide(reference, front, early, ident, budgets, seen).table
    lineage = ident["run"].rsplit("/", 1)[0]
    changed = reference.copy()
    cool = changed["run"].str.startswith(lineage + "/") & (changed["phase"] == "cooldown")
    changed.loc[cool, "loss"] *= 1.3
    after = decide(changed, front, early, ident, budgets, seen).table
    np.testing.assert_allclose(after["predicted"].astype(float), base["predicted"].astype(float), rtol=1e-9)


def test_the_sizes_that_bracket_a_budgets_expected_optimum_are_never_stopped():
    """A frontier far below every run: every prediction is off it, yet only the sizes away from the reference's
    best size (here made the largest, s3) stop; s3 and its neighbour s2 go on, so each budget keeps its bracket."""
    curves = synthetic_wsd_runs(np.random.default_rng(1), **SYNTH)
    reference = reference_runs(curves)
    top = pd.DataFrame({"variant": "a", "budget": ["lo", "hi"], "compute": [1e6, 1e20], "loss": 0.1, "run": "r",
                        "size": "s3", "params_nonembedding": int(2e4 * 8)})  # every compute, far below every run
    verdicts = {}
    for ident, rows, budgets, _ in _lineages(synthetic_wsd_runs(np.random.default_rng(2), **SYNTH)):
        if ident["variant"] == "a" and ident["seed"] == 0:
            seen = 0.3 * max(b for _, b, *_ in budgets)
            d = decide(reference, top, rows[rows["tokens"] <= seen], ident, budgets, seen)
            assert d.table["off_frontier"].all()
            verdicts[ident["size"]] = d
    assert {s: d.stop for s, d in verdicts.items()} == {"s0": True, "s1": True, "s2": False, "s3": False}
    assert "size s3 brackets the expected optimum" in verdicts["s3"].reason
    assert protected(top, "a", 1e12, {"s0": 1, "s1": 2, "s2": 4}) == {"s1", "s2"}
    assert protected(top, "zzz", 1e12, {"s0": 1, "s1": 2, "s2": 4}) == set()
