"""A run's final loss predicted from its beginning (predict), and the early-stop rule built on it (early_stop)."""
