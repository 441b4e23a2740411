"""Training loop, callbacks and loggers."""
