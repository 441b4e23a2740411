"""A-LLMRec (Kim et al., KDD'24) in llmkt's harness: a frozen CF model's item embeddings aligned with item text
(stage 1), soft prompts into a frozen LLM (stage 2), Hit@1 over stored candidate sets (docs/allmrec.md)."""

from llmkt.baselines.allmrec.alignment import ItemTextAlignment, freeze, stage1_step, state_hash
from llmkt.baselines.allmrec.answers import (HitResult, answer_text, display_title, hit_at_1, hit_at_1_of_scores,
                                             normalise_title, parse_answer)
from llmkt.baselines.allmrec.candidates import CandidateSets, sample_candidates
from llmkt.baselines.allmrec.prompt import MARKER, Slot, Template, default_template, render, text_of
from llmkt.baselines.allmrec.soft_prompt import Assembled, PromptExample, SoftPromptLM
from llmkt.baselines.allmrec.text import FrozenText, TunedText
from llmkt.baselines.allmrec.train import (PromptSource, Stage1Data, fit_stage1, fit_stage2, generate_answers,
                                           stage1_data)

__all__ = ["Assembled", "CandidateSets", "FrozenText", "HitResult", "ItemTextAlignment", "MARKER", "PromptExample",
           "PromptSource", "Slot", "SoftPromptLM", "Stage1Data", "Template", "TunedText", "answer_text",
           "default_template", "display_title", "fit_stage1", "fit_stage2", "freeze", "generate_answers",
           "hit_at_1", "hit_at_1_of_scores", "normalise_title", "parse_answer", "render", "sample_candidates",
           "stage1_data", "stage1_step", "state_hash", "text_of"]
