"""Final-point analysis: Approaches 1-3 on a known L(N, D) surface, bracketing, bounds."""
import numpy as np
import pandas as pd
import pytest

from analysis import stages

from analysis.frontier import approaches as finals
from analysis.options import AnalysisOptions
from analysis.synthetic import surface_truths, synthetic_budget_grid

OPTS = AnalysisOptions(n_boot=150, n_boot_approach3=100)


@pytest.fixture(scope="module")
def surface():
    df = synthetic_budget_grid(np.random.default_rng(0), n_range=(2e3, 2e6), tokens_per_param=(2, 2e5))
    return df, stages.analyse(df, OPTS, np.random.default_rng(0))


def test_a_known_surface_comes_back_through_approaches_1_to_3(surface):
    """L = E + A/N^alpha + B/D^beta sampled on an IsoFLOP grid with noise: every approach's estimate of
    what it measures lies inside its bootstrap interval."""
    _, t = surface
    truth = surface_truths()
    fits = t["fits"].set_index(["form", "frontier"])
    assert fits.loc[("pure", "final"), "primary"]  # budgets per size: the final-point frontier is primary
    # Approach 1: the compute-optimal frontier is E + G C^-gamma, gamma = alpha beta / (alpha + beta)
    eterm = fits.loc[("eterm", "final")]
    assert eterm["alpha_lo"] <= truth["gamma"] <= eterm["alpha_hi"]
    assert eterm["E_lo"] <= truth["E"] <= eterm["E_hi"]
    # Approach 2: every budget brackets its optimum; N_opt ~ C^a, D_opt ~ C^b
    assert (t["isoflop"]["status"] == "ok").all() and len(t["isoflop"]) == 5
    alloc = t["allocation"].set_index("quantity")
    for q, key in (("N_opt", "a"), ("D_opt", "b")):
        assert alloc.loc[q, "exponent_lo"] <= truth[key] <= alloc.loc[q, "exponent_hi"], q
        assert abs(alloc.loc[q, "exponent"] - truth[key]) < 0.03
    # Approach 3 on final points
    a3 = fits.loc[("approach3", "final")]
    assert a3["status"] == "ok"
    for name in ("alpha", "beta", "E"):
        assert a3[f"{name}_lo"] <= truth[name] <= a3[f"{name}_hi"], name


def test_the_final_point_frontier_has_one_point_per_budget_and_falls(surface):
    df, t = surface
    fp = t["final_points"]
    assert len(fp) == df["run"].nunique()  # one final point per run
    on = fp[fp["on_frontier"]].sort_values("flops")
    assert on["budget"].is_unique and len(on) == 5
    assert (np.diff(on["loss"]) < 0).all()
    for budget, g in fp.groupby("budget"):  # each frontier point is its budget's best run
        assert g.loc[g["on_frontier"], "loss"].item() == g["loss"].min()


def _budget(level, sizes_losses, variant="v"):
    rows = []
    for size, n, loss in sizes_losses:
        d = level / (6 * n)
        rows.append({"variant": variant, "objective": "causal", "size": size, "seed": 0, "run": f"{size}/{level:g}",
                     "budget": f"C{level:g}", "params_total": n, "params_nonembedding": n, "tokens": int(d),
                     "flops": level, "flops_6n": level, "loss": loss})
    return rows


def test_a_budget_whose_best_size_is_at_its_edge_is_flagged_and_left_out():
    sizes = [("s", 1e4), ("m", 3e4), ("l", 1e5), ("xl", 3e5)]
    rows = (_budget(1e13, zip(*zip(*sizes), [3.10, 3.20, 3.40, 3.70]))  # best = smallest: not bracketed
            + _budget(1e14, zip(*zip(*sizes), [3.00, 2.90, 2.95, 3.10]))
            + _budget(1e15, zip(*zip(*sizes), [2.95, 2.80, 2.70, 2.75])))
    iso, state = finals.isoflop_table(pd.DataFrame(rows), "flops", 100, np.random.default_rng(0), 0.95, 0.01)
    iso = iso.set_index("budget")
    assert iso.loc["C1e+13", "status"] == "unbracketed" and not iso.loc["C1e+13", "bracketed"]
    assert "best size s is the smallest of this budget: add a smaller size" in iso.loc["C1e+13", "note"]
    assert np.isnan(iso.loc["C1e+13", "N_opt"])
    assert (iso.loc[["C1e+14", "C1e+15"], "status"] == "ok").all()
    for b in ("C1e+14", "C1e+15"):  # D falls as N rises: its interval comes from N's, reversed
        assert iso.loc[b, "N_opt_lo"] < iso.loc[b, "N_opt"] < iso.loc[b, "N_opt_hi"]
        assert iso.loc[b, "D_opt_lo"] < iso.loc[b, "D_opt"] < iso.loc[b, "D_opt_hi"]
    alloc = finals.allocation_fits(iso.reset_index(), state, pd.DataFrame(rows), "flops", 0.95, 0.01)
    assert (alloc["n_budgets"] == 2).all() and (alloc["status"] == "ok").all()  # the edge budget is left out


def test_approach3_at_a_bound_or_degenerate_is_never_ok():
    """No irreducible loss (E = 0): log E runs to its bound and the fit says so; losses that do not
    depend on D leave B undetermined: a stated failure, not a number."""
    def study(loss):
        rows = []
        for level in (1e13, 1e14, 1e15):
            for k, n in enumerate((1e4, 3e4, 1e5, 3e5)):
                rows += _budget(level, [(f"n{k}", n, loss(n, level / (6 * n)))])
        fits = stages.fit_stage(pd.DataFrame(rows), AnalysisOptions(n_boot=20, n_boot_approach3=0),
                                np.random.default_rng(0))["fits"]
        return fits[fits["form"] == "approach3"].iloc[0]

    a3 = study(lambda n, d: 50 / n ** 0.3 + 400 / d ** 0.25)
    assert a3["status"] == "at_bound" and "E at a bound" in a3["note"] and "not an optimum" in a3["note"]
    a3 = study(lambda n, d: 2.0 + 50 / n ** 0.3)
    assert a3["status"] == "failed" and "does not fall with tokens D" in a3["note"]
