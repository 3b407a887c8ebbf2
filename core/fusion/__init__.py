"""Ranking fusion: one formula over normalized signals, candidate sets and re-ranking without the model."""
