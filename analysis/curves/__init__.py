"""The learning-curve table: its schema and checks (table), the early transient each run's points are cut by (transient)."""
