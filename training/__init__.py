"""Corpus, tokenizer, data loading, the training loop and checkpoints (uses `models/`)."""
