"""RePlay's SASRec on the exact llmkt split, for a side-by-side comparison with llmkt's SASRec.

Runs in its own venv (see ``benchmarks/setup_peers.sh``): RePlay + Lightning + llmkt (for the split and the
evaluator only, so both libraries are scored by the same code on the same users and items).

    OMP_WAIT_POLICY=PASSIVE benchmarks/.venv-replay/bin/python benchmarks/replay_sasrec.py \
        --dataset ml-1m-half --epochs 20 --out benchmarks/results/replay_sasrec_ml1m_half.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
import warnings

import lightning as L
import numpy as np
import pandas as pd
import torch
from replay.data import Dataset as RDataset
from replay.data import FeatureHint, FeatureInfo, FeatureSchema, FeatureSource, FeatureType
from replay.data.nn import SequenceTokenizer, TensorFeatureInfo, TensorFeatureSource, TensorSchema
from replay.models.nn.optimizer_utils import FatOptimizerFactory
from replay.models.nn.sequential.sasrec import SasRec, SasRecPredictionDataset, SasRecTrainingDataset

from llmkt.data import Dataset, leave_one_out, load_raw, preprocess
from llmkt.data import columns as C
from llmkt.evaluation import RankingProtocol, evaluate_ranking

warnings.filterwarnings("ignore")


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._t)
        print(f"epoch {len(self.times)}: {self.times[-1]:.1f}s loss={trainer.callback_metrics.get('train_loss')}",
              flush=True)


def to_replay(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"user_id": df[C.UID].to_numpy(), "item_id": df[C.IID].to_numpy(),
                         "timestamp": np.arange(len(df))})  # frames are in (uid, time) order already


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-1m-half")
    ap.add_argument("--data-dir", default=os.environ.get("LLMKT_DATA", "../shared/data"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    L.seed_everything(args.seed)

    raw = load_raw(args.dataset, args.data_dir)
    ds = Dataset.from_frames(preprocess(raw.interactions), raw.items, raw.users, args.dataset)
    split = leave_one_out(ds)
    n_items = ds.n_items

    schema = FeatureSchema([
        FeatureInfo("user_id", FeatureType.CATEGORICAL, FeatureHint.QUERY_ID),
        FeatureInfo("item_id", FeatureType.CATEGORICAL, FeatureHint.ITEM_ID),
        FeatureInfo("timestamp", FeatureType.NUMERICAL, FeatureHint.TIMESTAMP),
    ])
    # Every item in the catalogue is known to the tokenizer (item ids 1..n_items), so scores cover all items.
    all_items = pd.DataFrame({"item_id": np.arange(1, n_items + 1)})
    tschema = TensorSchema(TensorFeatureInfo(
        "item_id_seq", is_seq=True, feature_type=FeatureType.CATEGORICAL, embedding_dim=64,
        feature_hint=FeatureHint.ITEM_ID,
        feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, "item_id")]))
    train_r = RDataset(schema, to_replay(split.train), item_features=all_items, check_consistency=False)
    tokenizer = SequenceTokenizer(tschema, allow_collect_to_master=True)
    seq_train = tokenizer.fit_transform(train_r)
    hist_df = split.history("test")
    seq_test = tokenizer.transform(RDataset(schema, to_replay(hist_df), item_features=all_items,
                                            check_consistency=False))

    model = SasRec(tensor_schema=tokenizer.tensor_schema, block_count=2, head_count=2, hidden_size=64,
                   max_seq_len=200, dropout_rate=0.2, loss_type="CE",
                   optimizer_factory=FatOptimizerFactory(learning_rate=1e-3))
    train_dl = torch.utils.data.DataLoader(SasRecTrainingDataset(seq_train, max_sequence_length=200),
                                           batch_size=128, shuffle=True, num_workers=0)
    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", callbacks=[timer], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t0 = time.perf_counter()
    trainer.fit(model, train_dl)
    train_s = time.perf_counter() - t0

    # Map RePlay's encoded item ids back to llmkt's iids.
    enc = tokenizer.item_id_encoder.mapping["item_id"]
    enc_to_iid = np.zeros(len(enc), dtype=np.int64)
    for iid, code in enc.items():
        enc_to_iid[code] = iid
    q_enc = tokenizer.query_id_encoder.mapping["user_id"]
    inv_q = {v: k for k, v in q_enc.items()}  # RePlay query code -> our internal uid
    pred_ds = SasRecPredictionDataset(seq_test, max_sequence_length=200)
    by_uid = {}
    model.eval()
    t1 = time.perf_counter()
    with torch.inference_mode():
        for batch in torch.utils.data.DataLoader(pred_ds, batch_size=512):
            logits = model.predict(batch)  # (B, n_items) in RePlay's item order
            full = torch.full((logits.shape[0], n_items + 1), -torch.inf)
            full[:, torch.from_numpy(enc_to_iid)] = logits
            for qid, row in zip(batch["query_id"].reshape(-1).tolist(), full):
                by_uid[inv_q[qid]] = row
    score_s = time.perf_counter() - t1

    def scorer(uids: np.ndarray) -> torch.Tensor:
        return torch.stack([by_uid[int(u)] for u in uids])

    res = evaluate_ranking(scorer, hist_df, split.test, ds.n_users, n_items, RankingProtocol(ks=[10, 20]),
                           stage="test")
    out = {"library": "RePlay 0.22 SasRec (replay.models.nn.sequential.sasrec)", "dataset": args.dataset,
           "split": "leave_one_out", "protocol": res.protocol, "epochs": args.epochs, "threads": args.threads,
           "NDCG@10": res["NDCG@10"], "HR@10": res["HR@10"], "NDCG@20": res["NDCG@20"],
           "epoch_seconds": timer.times, "median_epoch_s": statistics.median(timer.times),
           "train_s": train_s, "score_all_users_s": score_s,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
