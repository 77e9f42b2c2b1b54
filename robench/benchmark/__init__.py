"""What a run is and how it is executed: suites, config, training, evaluation, metrics, store."""
