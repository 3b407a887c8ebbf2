"""Model-ready data: per-user behavior sequences, the leave-last-out split, batches and the sample generator."""
