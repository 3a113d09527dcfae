"""Comparisons between variants: exponent pairs, crossovers, tiers, extrapolation (comparisons), and every headline under other analysis choices (sensitivity)."""
