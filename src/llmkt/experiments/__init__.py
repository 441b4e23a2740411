"""Experiment runner: config to trained model and metrics."""

from llmkt.experiments.runner import RunResult, evaluate_model, load_dataset, split_dataset, train

__all__ = ["RunResult", "evaluate_model", "load_dataset", "split_dataset", "train"]
