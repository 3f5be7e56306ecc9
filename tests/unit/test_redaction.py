"""Redaction presets, custom patterns and hooks; multi-word matches redact every word they cover."""

from __future__ import annotations

import pytest

from spex_monitor.config import ConfigError, load_settings
from spex_monitor.monitor.redaction import Redactor, load_hook


def test_presets_replace_with_typed_placeholders():
    redact = Redactor()
    text = "mail jane.doe@example.com or call +44 20 7946 0958, card 4111111111111111"
    assert redact(text) == "mail <email> or call <phone>, card <digits>"
    assert redact("the plot was not good") == "the plot was not good"


def test_words_of_a_phone_number_are_redacted_even_though_none_matches_alone():
    redact = Redactor()
    text = "call +1 (555) 123-4567 now"
    keys = ["call", "+1", "555", "123-4567", "now", "call +1"]
    assert redact.words(keys, text) == ["call", "<phone>", "<phone>", "<phone>", "now", "call <phone>"]


def test_no_match_leaves_words_untouched_and_patterns_and_hooks_apply():
    assert Redactor().words(["not", "good"], "not good") == ["not", "good"]
    custom = Redactor(presets=(), patterns=[r"ACME-\d+"], hook=str.upper)
    assert custom("order ACME-42 shipped") == "ORDER <REDACTED> SHIPPED"
    assert load_hook("os.path:basename")("/a/b") == "b"
    with pytest.raises(ValueError, match="module:function"):
        load_hook("nocolon")
    with pytest.raises(ValueError, match="unknown redaction presets"):
        Redactor(presets=("ssn",))


def test_bad_redaction_config_names_the_field(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "models: [{name: m, backend: {kind: local, path: /x}}]\nstore: {redact_patterns: ['(unclosed']}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.errors[0][0] == "store.redact_patterns"


def test_words_skips_regexes_only_where_no_preset_can_match():
    """The fast path (presets only: a word without a digit or '@' is left alone) must give exactly what
    running every rule on every word gives."""
    import random

    from spex_monitor.lenses.features import normalize_key

    rng = random.Random(7)
    alphabet = ["good", "not", "user", "mail", "a@b.io", "x@y", "(555)", "123-4567", "+1", "42", "ab12"]
    alphabet += ["12345678", "order", "id:99999999", "to:x@y.com", "-", "(", ")", "e-mail", "call"]
    redactor = Redactor()
    for _ in range(500):
        text = " ".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        words = text.lower().split() + [" ".join(text.lower().split()[:2])]  # a multi-word key too
        tainted = redactor.pieces(text)
        expected = [
            redactor(" ".join(tainted.get(normalize_key(p), p) for p in w.split()) or w) for w in words
        ]
        if not tainted:
            expected = words
        assert redactor.words(words, text) == expected, text


def test_custom_patterns_given_as_a_generator_still_turn_the_fast_path_off():
    """Patterns are an Iterable: the redactor must not read them twice (a generator is empty the second
    time, which once made it skip the regexes for a word like "mysecret" holding a match inside)."""
    redactor = Redactor(presets=(), patterns=(p for p in [r"secret\w*"]))
    assert redactor.words(["mysecretkey", "x"], "mysecretkey x") == ["my<redacted>", "x"]
