"""The multi-task model: settings, network, text encoder, training, evaluation, metrics and the Recommender."""
