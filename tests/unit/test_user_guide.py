"""docs/user-guide.md (issue 19 item 14): linked from README; every configuration field it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spex_monitor.config import ModelConfig, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "user-guide.md"


def test_the_readme_links_the_user_guide():
    assert "](docs/user-guide.md)" in (ROOT / "README.md").read_text()


def test_every_configuration_field_the_guide_names_exists():
    named = set(re.findall(r"`((?:models\[\]|[a-z_]+)\.[a-z_]+)", GUIDE.read_text()))
    named = {n for n in named if n.split(".")[0] in {*Settings.model_fields, "models[]"}}
    assert len(named) >= 15, named  # the check reads the guide's fields, not nothing
    for name in sorted(named):
        section, field = name.split(".")
        model = ModelConfig if section == "models[]" else Settings.model_fields[section].annotation
        assert field in model.model_fields, name
