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
