"""Evaluation: ranking metrics (full and sampled protocols), click-prediction metrics, significance tests."""

from llmkt.evaluation.metrics import log_loss, ranking_metrics, roc_auc
from llmkt.evaluation.ranking import EvalResult, RankingProtocol, evaluate_ranking
from llmkt.evaluation.significance import paired_test

__all__ = ["EvalResult", "RankingProtocol", "evaluate_ranking", "log_loss", "paired_test", "ranking_metrics",
           "roc_auc"]
