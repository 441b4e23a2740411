from llmkt.experiments.profiles import generate_profiles
from llmkt.profiles.prompts import PromptTemplate
from llmkt.profiles.quality import QualityRules, echoed_sentences, flags, repeat_ratio
from llmkt.experiments.profiles import job_stats

# the `structured` style's format lines for movies, as Qwen2.5-Coder-1.5B copied them for 52 of 943 ml-100k users
ECHO = ("Preferences: up to four kinds of movies they like most, each with a rough share of their history in "
        "percent.\nBehaviour: one sentence on what their choices and ratings reveal about them.\nTrend: one sentence "
        "on how their taste changed from the oldest to the most recent movies.")
GOOD = ("Preferences: Action, Sci-Fi, Thriller, Romance. Share of history: 50%.\nBehaviour: Likes action and sci-fi "
        "movies the most and rates them higher than anything else.\nTrend: Shows an increasing interest in action and "
        "sci-fi films over time.")


def test_instructions_hold_the_format_lines_without_items():
    ins = PromptTemplate.load("structured", "movie").instructions("movie")
    assert "Preferences: up to four kinds of movies they like most" in ins
    assert "Merge them into one profile of this user" in ins  # the aggregate mode's text too
    assert "- " not in ins.split("oldest first")[1].split("Write this")[0]  # no item lines


def test_echo_flags_a_copied_format_and_not_an_answer():
    ins = PromptTemplate.load("structured", "movie").instructions("movie")
    assert flags(ECHO, QualityRules(), ins) == ["echo"]
    assert flags(GOOD, QualityRules(), ins) == []
    # the first line copied, the other two answered: 18 of 52 words echoed (> 25 %)
    first_line_copied = ECHO.splitlines()[0] + "\n" + "\n".join(GOOD.splitlines()[1:])
    assert echoed_sentences(first_line_copied, ins) == [ECHO.splitlines()[0]]
    assert flags(first_line_copied, QualityRules(), ins) == ["echo"]
    # one short copied phrase inside a real answer stays below the share
    phrase = GOOD.replace("Share of history: 50%.", "Each with a rough share of their history in percent.")
    assert echoed_sentences(phrase, ins) == ["Each with a rough share of their history in percent."]
    assert flags(phrase, QualityRules(), ins) == []
    assert flags(phrase, QualityRules(max_echo_share=0.1), ins) == ["echo"]
    assert flags(ECHO) == []  # without instructions there is nothing to compare with


def test_other_flags_exact():
    assert flags("   ") == ["empty"]
    assert flags("I'm sorry, I cannot help with that.") == ["too_short", "refusal"]
    assert repeat_ratio("a b c d a b c d") == 1 - 4 / 5  # grams: abcd bcda cdab dabc abcd -> 4 unique of 5


def test_stats_and_retry_flagged_use_the_echo_check(csv_folder, tmp_path, monkeypatch):
    import llmkt.experiments.profiles as gen
    from tests.profiles.test_generate import CountingBackend, _cfg

    backend = CountingBackend(texts={1: ECHO.replace("movies", "items")})  # csv data has no movie domain
    monkeypatch.setattr(gen, "backend_factory", lambda cfg: lambda: backend)
    monkeypatch.setattr(gen, "backend_model_id", lambda cfg: "fake:counting")
    cfg = _cfg(csv_folder, tmp_path, backend={"kind": "openai", "model": "x"})
    generate_profiles(cfg)
    s = job_stats(cfg)
    assert s["flags"] == {"echo": 1} and s["flagged_profiles"] == 1
    assert job_stats(cfg, ["quality.max_echo_share=1.0"])["flags"] == {}
    r = generate_profiles(cfg, retry_flagged=True)
    assert r.generated == 1 and r.flagged == 0 and len(backend.calls) == 3
