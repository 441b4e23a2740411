"""A tiny in-memory tokenizer and causal LM for A-LLMRec's tests (no download, seconds on CPU)."""

from __future__ import annotations

import re

import torch

WORDS = ("this user has made a series of purchases in the following order based on sequence generate "
         "representation token choose one next product to recommend from items answer with title recommended item "
         "only recommendation is watched movies movie . , : \" ' red soap blue cream green gel mask oil brush lip "
         "balm serum toner comb user assistant").split()

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer(chat: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<|im_end|>": 2, "<|im_start|>": 3}
    for w in dict.fromkeys(WORDS):
        vocab.setdefault(w, len(vocab))
    for i in range(10):
        vocab.setdefault(str(i), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<|im_end|>", bos_token="<|im_start|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat:
        fast.chat_template = CHAT
    # decode joins with spaces (WordLevel has no decoder); enough for title matching after normalisation
    return fast


def tiny_llm(vocab_size: int, seed: int = 0, hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, eos_token_id=2,
                      pad_token_id=0, bos_token_id=3, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text)


def save_tiny_llm(folder, seed: int = 0) -> str:
    """A tiny causal LM + tokenizer saved as a transformers model folder."""
    tok = tiny_tokenizer()
    tiny_llm(len(tok), seed).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def save_tiny_sentence_encoder(folder, seed: int = 0) -> str:
    """A tiny BERT + mean pooling saved as a sentence-transformers folder."""
    from pathlib import Path

    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # sentence-transformers < 5.x
        from sentence_transformers import models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    bert = folder / "bert"
    bert.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS), *map(str, range(10))]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(str(bert / "vocab.txt")).save_pretrained(bert)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=128)).save_pretrained(bert)
    st = SentenceTransformer(modules=[models.Transformer(str(bert), max_seq_length=64),
                                      models.Pooling(16, "mean")], device="cpu")
    st.save(str(folder / "st"))
    return str(folder / "st")
