"""Writes the results table of docs/benchmarks.md from benchmarks/results/*.json (between the markers)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ORDER = ["llmkt_sasrec_ml1m_half", "replay_sasrec_ml1m_half", "llmkt_bert4rec_ml1m_half"]


def table() -> str:
    rows = ["| run | library / model | NDCG@10 | HR@10 | NDCG@20 | median s/epoch | epochs | score all users (s) "
            "| peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    names = [n for n in ORDER if (RESULTS / f"{n}.json").exists()]
    names += sorted(p.stem for p in RESULTS.glob("*.json")
                    if p.stem not in names and "library" in json.loads(p.read_text()))
    for name in names:
        r = json.loads((RESULTS / f"{name}.json").read_text())
        rows.append(f"| `{name}` | {r['library']} | {r['NDCG@10']:.4f} | {r['HR@10']:.4f} | {r['NDCG@20']:.4f} "
                    f"| {r['median_epoch_s']:.1f} | {r['epochs']} | {r['score_all_users_s']:.2f} "
                    f"| {r['peak_rss_mb']:.0f} |")
    return "\n".join(rows)


def main() -> None:
    text = DOC.read_text()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:a] + "\n" + table() + "\n" + text[b:])
    print(table())


if __name__ == "__main__":
    main()
