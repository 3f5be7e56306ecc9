"""The README's main command works: the demo detects the injected incident and traces it to negation.
(Its LLM story, which ``make demo`` runs next, is tested on its own in ``test_demo_llm.py``.)"""

from __future__ import annotations

import pytest

from spex_monitor.demo import main

pytestmark = pytest.mark.integration


def test_demo_detects_and_traces_the_incident(capsys):
    assert main(["--skip-llm"]) == 0
    out = capsys.readouterr().out
    assert (
        "ALARM" in out and "RESULT: the incident was detected and traced to the negation interaction." in out
    )
    assert "spex_monitor_interaction_shift_pvalue" in out
