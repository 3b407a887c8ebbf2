"""Global influence: attribution tables over many users, per-behavior estimands, the behavior swap, ablation."""
