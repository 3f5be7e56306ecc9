"""The on-call HTML report rendered by a real browser (issue 19 item 7): headless Chromium, no JavaScript,
no network; the test reads the text a person would read off the DOM Chromium built.

Chromium comes from Debian's ``chromium-headless-shell`` (``make system-deps`` installs it as root); when it
is missing the test fails with that reason — it never skips.
"""

from __future__ import annotations

import html.parser
import shutil
import subprocess

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.html_report import TraceReport, render_trace_report
from spex_monitor.lenses.data_trace import DataTrace, RankedExample, RankedGroup
from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.server.messages import report_message

pytestmark = pytest.mark.integration

NEG = ["the", "plot", "was", "not", "boring"]
CAST = ["the", "cast", "did", "like", "it"]


class _Visible(html.parser.HTMLParser):
    """Text outside <style>, <script> and <title>: what the page shows."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001, ANN201
        self.hidden += tag in ("style", "script", "title")

    def handle_endtag(self, tag):  # noqa: ANN001, ANN201
        self.hidden -= tag in ("style", "script", "title")

    def handle_data(self, data):  # noqa: ANN001, ANN201
        if not self.hidden and data.strip():
            self.parts.append(data.strip())


def _maps() -> tuple[InteractionMap, InteractionMap]:
    rng = np.random.default_rng(5)
    sides = []
    for n, strength in ((300, 1.0), (120, 0.05)):
        m = InteractionMap(seed=n)
        for i in range(n):
            if i % 2:
                coef = strength + 0.03 * rng.standard_normal()
                m.add(Interactions({(3, 4): coef}, 5), NEG, request_id=f"{'bw'[n < 300]}{i}")
            else:
                m.add(Interactions({(1, 3): 0.3 + 0.03 * rng.standard_normal()}, 5), CAST, request_id=f"c{i}")
        sides.append(m)
    return sides[0], sides[1]


def test_the_report_reads_right_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium-headless-shell is not installed: `make system-deps` installs it (root, Debian)")
    baseline, window = _maps()
    shift = compare_maps(baseline, window, n_permutations=199)
    history = []
    for i, t in enumerate((1_700_000_000.0, 1_700_000_020.0, 1_700_000_040.0)):  # 40 s of windows
        message = report_message("sentiment", "v1", i + 1, shift, alarm=i == 2)
        message.time_unix = t
        history.append(message)
    after = pb.StoredExplanation(
        request_id="b1", version="v1", faithfulness=0.97, text="the plot was not boring", text_stored=True
    )
    after.top.add(keys=["boring", "not"], fourier=0.05)
    page = render_trace_report(
        TraceReport(
            model="sentiment",
            latest=history[-1],
            history=history,
            baseline_top=[],
            window_top=[],
            examples=[],
            pair=(None, after),
            data=DataTrace(
                keys=("love", "music"), exemplar="i did not love the music", target=1, target_name="positive",
                training_set="planted", effect_all=2.7, groups=[RankedGroup("shard-157", 0.374, 9, [2000])],
                group_pairs=[], faithfulness=0.81, budget=400, retrains=701, seconds=10.3,
                examples=[RankedExample(2000, "shard-157", "i did not love the music", 1, 0.25)],
            ),  # fmt: skip
        )
    )
    assert "<script" not in page and "http://" not in page and "https://" not in page  # no JS, no network
    path = tmp_path / "trace.html"
    path.write_text(page)
    # (--dump-dom serialises the DOM with the browser's own script engine, so scripts cannot be switched
    # off here; the page carries none, asserted above)
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "<body" in dom.stdout, dom.stderr[-2000:]
    reader = _Visible()
    reader.feed(dom.stdout)
    text = "\n".join(reader.parts)
    # The one-sentence summary first, then the verdict with the strict rule, then the table and the pair.
    assert reader.parts[1].startswith("(boring, not) lost 95% of its strength where all its keys occur"), text
    assert "1 other moved by chance" in reader.parts[1]
    assert "ALARM: interaction shift" in text and "p < baseline.alarm_p_value" in text
    assert "behaviour changed" in text and "within noise" in text and "boring × not" in text
    assert "one request on each side" in text and "the plot was not boring" in text
    assert "(none stored)" in text
    assert "Training data behind love × music" in text and "shard-157 (1 of 9 rows hold the tuple)" in text
    # both ends of the time axis read differently (seconds, UTC)
    assert "22:13:20 UTC" in text and "22:14:00 UTC" in text
