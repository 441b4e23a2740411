#!/usr/bin/env bash
# A-LLMRec benchmark on amazon-beauty (docs/allmrec.md, docs/results.md). From the repository root, with
# LLMKT_DATA pointing at the data home. The two SASRec runs are the base and item-text arms of the beauty study
# (benchmarks/studies/beauty_sasrec_item_text.yaml) at seed 1; when that study's folder is there its trial folders
# are linked instead of training again.
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE
mkdir -p runs
STUDY=studies/beauty_sasrec_item_text/trials
COMMON=(--set data.name=amazon-beauty --set model.max_len=50 --set training.progress=false
        --set training.num_threads=1 --set training.eval_every=2 --set training.patience=3 --set training.seed=1
        --set output.dir=runs)
if [ ! -e runs/beauty-sasrec-s1 ]; then
  if ls -d $STUDY/none-s1-* >/dev/null 2>&1; then ln -sfn "$PWD/$(ls -d $STUDY/none-s1-* | head -1)" runs/beauty-sasrec-s1
  else llmkt train configs/sasrec_ml1m_half.yaml "${COMMON[@]}" --set output.name=beauty-sasrec-s1; fi
fi
if [ ! -e runs/beauty-sasrec-item-text-s1 ]; then
  if ls -d $STUDY/item_text-s1-* >/dev/null 2>&1; then
    ln -sfn "$PWD/$(ls -d $STUDY/item_text-s1-* | head -1)" runs/beauty-sasrec-item-text-s1
  else
    llmkt train configs/sasrec_ml1m_half.yaml "${COMMON[@]}" --set output.name=beauty-sasrec-item-text-s1 \
      --set transfer.side=item --set transfer.layer=item_emb \
      --set transfer.reducer.method=pca --set transfer.loss=rmse --set transfer.alpha=0.1 \
      --set transfer.dynamic_beta=true --set transfer.vectors.item_text=all-minilm-l6-v2 --set transfer.compare_base=false
  fi
fi
llmkt allmrec train benchmarks/allmrec/beauty.yaml "$@"
llmkt allmrec evaluate benchmarks/allmrec/beauty.yaml "$@"
llmkt allmrec generate benchmarks/allmrec/beauty.yaml "$@"
