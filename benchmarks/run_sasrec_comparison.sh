#!/usr/bin/env bash
# Side by side on one machine, one after the other (never concurrently: 2 cores): llmkt SASRec, RePlay SasRec,
# llmkt BERT4Rec on ml-1m-half, leave-one-out, full ranking, 20 epochs, 2 threads.
# Results: benchmarks/results/*.json, summarised by benchmarks/report.py into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
export LLMKT_DATA=${LLMKT_DATA:-$(cd .. && pwd)/shared/data}
PY=${PY:-.venv/bin/python}
REPLAY_PY=${REPLAY_VENV:-benchmarks/.venv-replay}/bin/python
mkdir -p benchmarks/results
bash benchmarks/setup_peers.sh
$PY benchmarks/sequential_ml1m.py --config configs/sasrec_ml1m_half.yaml \
    --out benchmarks/results/llmkt_sasrec_ml1m_half.json
$REPLAY_PY benchmarks/replay_sasrec.py --dataset ml-1m-half --epochs 20 --threads 2 \
    --out benchmarks/results/replay_sasrec_ml1m_half.json
$PY benchmarks/sequential_ml1m.py --config configs/bert4rec_ml1m_half.yaml \
    --out benchmarks/results/llmkt_bert4rec_ml1m_half.json
$PY benchmarks/report.py
