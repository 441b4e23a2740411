"""The Hugging Face backend on a real model: SmolLM2-135M-Instruct's GGUF, dequantised by transformers."""

import pytest

from .conftest import _need


@pytest.fixture(scope="module")
def hf_backend(smollm2_file):
    try:
        import gguf  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        _need("transformers and gguf are not installed (pip install 'llmkt[hf]')")
    from llmkt.profiles.backends.hf import HFBackend

    b = HFBackend(str(smollm2_file), device="cpu", threads=2)
    yield b
    b.close()


def test_chat_template_applied_and_tokens_counted(hf_backend):
    from llmkt.profiles.backends.base import GenerationSettings

    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a movie genre."}]
    n = hf_backend.count_tokens(msgs)
    tok = hf_backend.tokenizer
    assert n == len(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
                    ["input_ids"])
    assert n > len(tok("You are terse. Name a movie genre.")["input_ids"])  # template tokens were added
    g1 = hf_backend.complete(msgs, GenerationSettings(max_tokens=12, temperature=0.0))
    g2 = hf_backend.complete(msgs, GenerationSettings(max_tokens=12, temperature=0.0))
    assert g1.text and g1.text == g2.text  # greedy decoding is deterministic
    assert g1.prompt_tokens == n and 0 < g1.completion_tokens <= 12
    assert hf_backend.model_id == "hf:SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.realdata
def test_profiles_job_with_the_hf_backend(hf_backend, smollm2_file, shared_data, tmp_path, monkeypatch):
    import llmkt.experiments.profiles as gen
    from llmkt.experiments.profiles import generate_profiles

    monkeypatch.setattr(gen, "backend_factory", lambda cfg: lambda: hf_backend)  # reuse the loaded model
    cfg = {"data": {"name": "ml-100k", "data_dir": str(shared_data)}, "store": str(tmp_path / "p.sqlite"),
           "users": {"limit": 2}, "progress": False, "prompt": {"max_items": 5},
           "backend": {"kind": "hf", "model": str(smollm2_file), "device": "cpu"},
           "generation": {"max_tokens": 16, "temperature": 0.0}}
    r = generate_profiles(cfg)
    assert (r.generated, r.failed) == (2, 0) and 0 < r.completion_tokens <= 32
    assert generate_profiles(cfg).generated == 0
