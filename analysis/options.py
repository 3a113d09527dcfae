"""Analysis options shared by the Snakemake workflow and ``python -m analysis``."""
from __future__ import annotations

from dataclasses import dataclass

COMPUTE_COLUMNS = ("flops", "flops_6n")
FRONTIERS = ("auto", "final", "envelope")


MIN_BOOT = 5  # fewer resamples give an interval of no width to speak of (1: zero); under 100 the CLI says "rough"


@dataclass(frozen=True)
class AnalysisOptions:
    compute: str = "flops"  # compute column used for L(C): "flops" or "flops_6n"
    # the frontier that fits, comparisons and the summary use: "final" = lower envelope of the runs'
    # final points (Approach 1), "envelope" = lower envelope of the learning curves (Kaplan), "auto" =
    # final when some size was trained at two or more token budgets, else envelope
    frontier: str = "auto"
    # learning-curve envelope: drop a run's points with tokens < drop_fraction x its final tokens; None = the
    # default early-transient rule (10%, analysis.curves.transient)
    drop_fraction: float | None = None
    drop_warmup: bool = True  # also drop points with tokens < warmup_tokens (if that column exists)
    grid_points: int = 40  # log-spaced compute grid per variant (frontier interpolation and fits)
    n_boot: int = 1000  # cluster-bootstrap resamples (whole runs)
    huber_delta: float = 1e-3  # Huber delta on log-loss residuals (E-term and Approach-3 fits)
    ci_level: float = 0.95  # percentile interval level
    significance: float = 0.05  # Holm-adjusted level for "steeper"
    # Tier noise floor (nats) when a variant has neither seed replicates nor eval_loss_se:
    # 0.01 nats is ~2x the seed-to-seed SD of final eval loss typically seen for small LMs.
    noise_floor_default: float = 0.01
    seed: int = 0  # seed for numpy.random.default_rng in the CLI / workflow
    n_jobs: int = 1  # joblib workers for bootstrap fits
    n_boot_approach3: int | None = None  # resamples for the Approach-3 fit (None: n_boot); its costliest part
    # resamples of each cell of the sensitivity grid (analysis.comparison.sensitivity): the verdicts need bootstrap SEs
    # (0: point estimates only, verdicts not computed)
    n_boot_sensitivity: int = 200

    @property
    def n_boot_approach3_resolved(self) -> int:
        return self.n_boot if self.n_boot_approach3 is None else self.n_boot_approach3

    def __post_init__(self):
        def bad(name, rule):
            raise ValueError(f"AnalysisOptions.{name}={getattr(self, name)!r} is invalid; {rule}")

        if self.compute not in COMPUTE_COLUMNS:
            bad("compute", f"use one of {', '.join(COMPUTE_COLUMNS)}")
        if self.frontier not in FRONTIERS:
            bad("frontier", f"use one of {', '.join(FRONTIERS)}")
        if self.drop_fraction is not None and not 0.0 <= self.drop_fraction < 1.0:
            bad("drop_fraction", "use None (the default early-transient rule) or a fraction in [0, 1)")
        if not isinstance(self.drop_warmup, bool):
            bad("drop_warmup", "use True or False")
        if not (isinstance(self.grid_points, int) and self.grid_points >= 5):
            bad("grid_points", "use an integer >= 5")
        if not (isinstance(self.n_boot, int) and (self.n_boot == 0 or self.n_boot >= MIN_BOOT)):
            bad("n_boot", f"use 0 (no bootstrap: OLS intervals, labelled so) or at least {MIN_BOOT} resamples "
                          "(a percentile interval from fewer has no width to speak of)")
        if not self.huber_delta > 0:
            bad("huber_delta", "use a positive number such as 1e-3")
        if not 0.5 <= self.ci_level < 1.0:
            bad("ci_level", "use a level in [0.5, 1), e.g. 0.95")
        if not 0.0 < self.significance < 1.0:
            bad("significance", "use a level in (0, 1), e.g. 0.05")
        if not self.noise_floor_default >= 0:
            bad("noise_floor_default", "use a non-negative loss difference in nats")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            bad("seed", "use a non-negative integer")
        if not (self.n_boot_approach3 is None or (isinstance(self.n_boot_approach3, int)
                                                  and self.n_boot_approach3 >= 0)):
            bad("n_boot_approach3", "use None (same as n_boot) or an integer >= 0")
        if not (isinstance(self.n_boot_sensitivity, int) and self.n_boot_sensitivity >= 0):
            bad("n_boot_sensitivity", "use an integer >= 0 (0: point estimates only, no verdicts)")
        if not (isinstance(self.n_jobs, int) and self.n_jobs != 0):
            bad("n_jobs", "use a positive integer or -1 for all cores")
