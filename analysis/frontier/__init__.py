"""Frontiers: the lower envelope of the learning curves (envelope), the final points, IsoFLOP minima and optimal allocation (approaches: Chinchilla Approaches 1-2)."""
