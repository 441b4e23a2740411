"""Data: datasets, loaders, preprocessing, leak-free splits, sequence building, knowledge vector tables."""

from llmkt.data.dataset import Dataset, IdMap
from llmkt.data.loaders import RawData, available_datasets, load_raw
from llmkt.data.preprocess import preprocess
from llmkt.data.splits import Split, given_split, global_temporal, leave_one_out, make_split, ratio_split
from llmkt.data.vectors import ProfileVectors

__all__ = ["Dataset", "IdMap", "ProfileVectors", "RawData", "Split", "available_datasets", "given_split",
           "global_temporal", "leave_one_out",
           "load_raw", "make_split", "preprocess", "ratio_split"]
