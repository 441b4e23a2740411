#!/usr/bin/env bash
# Serving benchmark (docs/benchmarks.md, "Serving"): SASRec and MultVAE on ml-100k, base and transfer-trained,
# exported and served by `llmkt serve` on 127.0.0.1; latency/throughput at 1, 8, 32 concurrent clients and in-process
# scoring per 1,000 users. From the repository root with LLMKT_DATA set; ~10 min on 2 cores.
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE
llmkt profiles import configs/profiles_ml100k_import.yaml
llmkt profiles embed configs/profiles_ml100k_import.yaml
for m in sasrec multvae; do
  [ -f runs/serve-$m/results.json ] || llmkt train benchmarks/serving/${m}_ml100k.yaml
  for v in serve-$m-base serve-$m; do
    [ -f exports/$v/metadata.json ] || llmkt export runs/$v -o exports/$v
  done
done
python benchmarks/serving/bench_serving.py sasrec=exports/serve-sasrec-base sasrec+kt=exports/serve-sasrec \
  multvae=exports/serve-multvae-base multvae+kt=exports/serve-multvae "$@"
