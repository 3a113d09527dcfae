"""Power-law fits of L(C), L(N) and L(N, D) with their intervals (powerlaw), and the cluster bootstrap over runs (bootstrap)."""
