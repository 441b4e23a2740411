import pytest

from llmkt.profiles.backends.base import Backend, Generation
from llmkt.config.profiles import ProfilesConfig
from llmkt.experiments.profiles import generate_profiles
from llmkt.experiments.profiles import job_profiles, job_stats
from llmkt.profiles.store import ProfileStore


def _cfg(csv_folder, tmp_path, **kw):
    raw = {"data": {"name": "csv", "path": str(csv_folder)}, "store": str(tmp_path / "p.sqlite"),
           "progress": False, **kw}
    return ProfilesConfig.model_validate(raw)


def test_template_backend_profiles_every_user_once(csv_folder, tmp_path):
    cfg = _cfg(csv_folder, tmp_path, backend={"kind": "template"})
    r = generate_profiles(cfg)
    assert (r.users, r.cached, r.generated, r.failed) == (2, 0, 2, 0)
    recs = job_profiles(cfg)
    assert [x.external_user for x in recs] == [1, 2]
    assert recs[0].text.splitlines()[:3] == [
        "History: 4 interactions.",
        "Ratings: mean 4.00, 75% rated 4 or 5, 25% rated 1 or 2.",
        "Top genres by count: Drama (75%), Comedy (25%), Horror (25%)."]
    assert recs[0].model_id == "template:v1" and recs[0].cutoff_timestamp == 130
    again = generate_profiles(cfg)
    assert (again.cached, again.generated) == (2, 0)
    with ProfileStore(cfg.store_path()) as s:
        assert s.count() == 2


class CountingBackend(Backend):
    model_id = "fake:counting"

    def __init__(self, texts=None):
        self.calls = []
        self.texts = texts or {}

    def complete(self, messages, settings):
        self.calls.append((messages, settings.seed))
        user_line = messages[-1]["content"].splitlines()[1]
        text = self.texts.get(len(self.calls), f"Preferences: dramas. Seed {settings.seed}. " + " ".join(f"w{i}" for i in range(25)))
        return Generation(text + f" [{user_line}]", 100, 20, "stop")


def test_rerun_makes_no_llm_call_and_settings_change_the_key(csv_folder, tmp_path, monkeypatch):
    import llmkt.experiments.profiles as gen

    backend = CountingBackend()
    monkeypatch.setattr(gen, "backend_factory", lambda cfg: lambda: backend)
    monkeypatch.setattr(gen, "backend_model_id", lambda cfg: "fake:counting")
    cfg = _cfg(csv_folder, tmp_path, backend={"kind": "openai", "model": "x"})
    r = generate_profiles(cfg)
    assert r.generated == 2 and len(backend.calls) == 2 and r.prompt_tokens == 200 and r.completion_tokens == 40
    generate_profiles(cfg)
    assert len(backend.calls) == 2  # nothing regenerated
    generate_profiles(cfg, ["generation.temperature=0.7"])
    assert len(backend.calls) == 4  # new settings, new profiles
    generate_profiles(cfg, ["generation.max_tokens=20"])  # the fake backend always answers 20 tokens
    assert job_stats(cfg, ["generation.max_tokens=20"])["hit_max_tokens"] == 2
    with ProfileStore(cfg.store_path()) as s:
        assert s.count() == 6


def test_retry_flagged_regenerates_only_flagged_with_a_new_seed(csv_folder, tmp_path, monkeypatch):
    import llmkt.experiments.profiles as gen

    backend = CountingBackend(texts={1: "I'm sorry, I cannot help with that."})
    monkeypatch.setattr(gen, "backend_factory", lambda cfg: lambda: backend)
    monkeypatch.setattr(gen, "backend_model_id", lambda cfg: "fake:counting")
    cfg = _cfg(csv_folder, tmp_path, backend={"kind": "openai", "model": "x"})
    generate_profiles(cfg)
    s = job_stats(cfg)
    assert s["profiles"] == 2 and s["flags"] == {"refusal": 1, "too_short": 1} and s["flagged_profiles"] == 1
    assert s["hit_max_tokens"] == 0  # 20 completion tokens of 256
    r = generate_profiles(cfg, retry_flagged=True)
    assert r.generated == 1 and r.flagged == 0
    assert backend.calls[-1][1] == 1  # seed + attempt
    recs = job_profiles(cfg)
    assert [x.external_user for x in recs] == [1, 2]  # user order, although user 1's profile is now the newest
    assert [x.attempt for x in recs] == [1, 0]
    assert len(recs) == 2


def test_backend_failures_are_counted_and_retried_on_rerun(csv_folder, tmp_path, monkeypatch):
    import llmkt.experiments.profiles as gen
    from llmkt.profiles.backends.base import BackendError

    class Flaky(CountingBackend):
        def complete(self, messages, settings):
            if not self.calls:
                self.calls.append(None)
                raise BackendError("server down")
            return super().complete(messages, settings)

    backend = Flaky()
    monkeypatch.setattr(gen, "backend_factory", lambda cfg: lambda: backend)
    monkeypatch.setattr(gen, "backend_model_id", lambda cfg: "fake:counting")
    cfg = _cfg(csv_folder, tmp_path, backend={"kind": "openai", "model": "x"})
    r = generate_profiles(cfg)
    assert (r.generated, r.failed) == (1, 1) and "server down" in r.errors[0]
    r = generate_profiles(cfg)
    assert (r.cached, r.generated, r.failed) == (1, 1, 0)


def test_unknown_keys_in_a_profile_config_are_named():
    from llmkt.errors import ConfigError
    from llmkt.config.profiles import load_profiles_config

    with pytest.raises(ConfigError, match=r"backend.modle: unknown key; valid keys here: \[.*'model'"):
        load_profiles_config({"backend": {"kind": "llamacpp", "modle": "x"}})
    with pytest.raises(ConfigError, match=r"prompt.long_history"):
        load_profiles_config({"prompt": {"long_history": "chunky"}})


def test_switching_the_backend_by_one_override():
    """The documented `--set backend.kind=template` on a llama.cpp job: the backend section starts afresh."""
    from llmkt.config.profiles import load_profiles_config

    cfg = load_profiles_config("configs/profiles_ml100k.yaml", ["backend.kind=template", "backend.top=5"])
    assert cfg.backend.kind == "template" and cfg.backend.top == 5 and cfg.workers == 2
    same = load_profiles_config("configs/profiles_ml100k.yaml", ["backend.kind=llamacpp", "backend.threads=2"])
    assert same.backend.n_ctx == 2048 and same.backend.threads == 2  # the same kind keeps its keys
