"""A real Prometheus (Debian package) scrapes the sidecar on loopback; metrics arrive and move."""

from __future__ import annotations

import pytest

from spex_monitor.examples.sentiment import generate_corpus

from .prometheus_harness import prometheus_stack, requires_prometheus, sidecar_settings
from .prometheus_harness import query as _query
from .prometheus_harness import send as _send
from .prometheus_harness import wait_for as _wait_for

pytestmark = [pytest.mark.integration, requires_prometheus]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prom")
    with prometheus_stack(folder, sidecar_settings(folder)) as (sidecar, base):
        yield sidecar, base


def test_metrics_arrive_and_move_in_prometheus(stack):
    sidecar, base = stack
    texts, _ = generate_corpus(200, seed=9)
    texts = [t for t in texts if len(t.split()) <= 8]
    _send(sidecar, texts[:30], "a")
    observed = 'sum(spex_monitor_requests_observed_total{model="sentiment"})'
    first = _wait_for(base, observed, lambda v: v >= 30)
    _wait_for(base, 'sum(spex_monitor_explanations_total{status="ok"})', lambda v: v > 0)
    _send(sidecar, texts[30:70], "b")
    _wait_for(base, observed, lambda v: v >= first + 40)
    _wait_for(base, "sum(spex_monitor_ablation_inferences_total)", lambda v: v > 0)
    _wait_for(base, 'count(spex_monitor_interaction_shift_pvalue{model="sentiment"})', lambda v: v >= 1)
    _wait_for(
        base,
        "histogram_quantile(0.5, sum by (le) (rate(spex_monitor_explanation_duration_seconds_bucket[1m])))",
        lambda v: v > 0,
    )
    assert _query(base, 'up{job="spex-monitor"}') == 1.0
