"""Recommender models behind one contract (``loss``, ``score``, ``user_representation``)."""

from llmkt.models.base import Recommender, SequentialRecommender
from llmkt.models.bert4rec import BERT4Rec
from llmkt.models.multvae import MultVAE
from llmkt.models.registry import available_models, build_model
from llmkt.models.sasrec import SASRec

__all__ = ["BERT4Rec", "MultVAE", "Recommender", "SASRec", "SequentialRecommender", "available_models", "build_model"]
