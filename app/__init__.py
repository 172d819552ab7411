"""Entry points: the command line and the service that wires producers, workers and Redis."""
