import pytest

from llmkt.errors import ConfigError
from llmkt.profiles.history import training_histories
from llmkt.profiles.prompts import DEFAULT_SYSTEM, PromptTemplate


def test_structured_prompt_lists_items_oldest_first_with_metadata(movie_split):
    h = training_histories(movie_split)[0]
    msgs = PromptTemplate.load("structured", "movie").render("items", history=h, n_total=len(h), domain="movie")
    assert msgs[0] == {"role": "system", "content": DEFAULT_SYSTEM}
    text = msgs[1]["content"]
    assert text.startswith("Here are 4 movies a user interacted with, oldest first, with the user's rating")
    lines = [ln for ln in text.splitlines() if ln.startswith("- ")]
    assert lines == ["- Alpha (1995) | Drama | rated 5/5", "- Beta (1977) | Comedy, Drama | rated 4/5",
                     "- Gamma | Horror | rated 2/5", "- Delta (1995) | Drama, War | rated 5/5"]
    assert "Preferences:" in text and "Behaviour:" in text and "Trend:" in text


def test_selection_is_announced(movie_split):
    h = training_histories(movie_split)[0]
    text = PromptTemplate.load("llmkt_movie", "movie").render("items", history=h.subset(slice(2, None)),
                                                              n_total=4, domain="movie")[1]["content"]
    assert "Here are 2 movies a user interacted with (a selection from 4)" in text
    assert "5. Dislikes" in text


def test_product_lines_and_custom_item_line(movie_split):
    h = training_histories(movie_split)[1]
    t = PromptTemplate.load("structured", "product")
    assert t.item_dicts(h)[0]["line"] == "Beta | rated 3/5"
    custom = PromptTemplate.load("structured", "movie", item_line="{{ title|upper }}")
    assert [d["line"] for d in custom.item_dicts(h)] == ["BETA", "DELTA"]


def test_user_template_file_and_hash(tmp_path, movie_split):
    h = training_histories(movie_split)[0]
    f = tmp_path / "mine.j2"
    f.write_text("User {{ user }} saw {{ n_items }}: {% for it in items %}{{ it.title }};{% endfor %}")
    t = PromptTemplate.load(str(f), "movie", system="")
    msgs = t.render("items", history=h, n_total=4, domain="movie")
    assert msgs == [{"role": "user", "content": "User {} saw 4: Alpha;Beta;Gamma;Delta;"}]
    h1 = t.hash({})
    f.write_text("changed {{ n_items }}")
    assert PromptTemplate.load(str(f), "movie", system="").hash({}) != h1
    assert t.hash({"budget": 1}) != h1


def test_template_errors_are_clear(tmp_path, movie_split):
    with pytest.raises(ConfigError, match="neither a built-in style"):
        PromptTemplate.load("nope", "movie")
    bad = tmp_path / "bad.j2"
    bad.write_text("{% for x in %}")
    with pytest.raises(ConfigError, match="syntax error on line 1"):
        PromptTemplate.load(str(bad), "movie")
    undefined = tmp_path / "undef.j2"
    undefined.write_text("{{ nonexistent_variable }}")
    h = training_histories(movie_split)[0]
    with pytest.raises(ConfigError, match="available variables"):
        PromptTemplate.load(str(undefined), "movie").render("items", history=h, domain="movie")


def test_sandbox_blocks_attribute_escapes(tmp_path, movie_split):
    f = tmp_path / "evil.j2"
    f.write_text("{{ items.__class__.__mro__ }}")
    h = training_histories(movie_split)[0]
    from jinja2.exceptions import SecurityError

    with pytest.raises((SecurityError, ConfigError)):
        PromptTemplate.load(str(f), "movie").render("items", history=h, domain="movie")
