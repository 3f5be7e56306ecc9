"""The on-call trace as text: range semantics (issue 19 item 1) and the strict alarm rule (item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.monitor.baselines import Baselines
from spex_monitor.monitor.closing import WindowCloser
from spex_monitor.monitor.records import LockedCounter
from spex_monitor.monitor.windows import ClosedWindow
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.trace_text import format_p, pick_detail, render_range

pytestmark = pytest.mark.unit


def _report(window_id: int, p: float, alarm: bool, ts: float, keys=("not", "good"), delta=-0.5):
    message = pb.ShiftReport(
        model="sentiment", version="v1", window_id=window_id, p_value=p, alarm=alarm, time_unix=ts,
        window_requests=40,
    )
    message.top_contributors.add(keys=list(keys), baseline=0.6, window=0.6 + delta, delta=delta)
    return message


def test_a_range_lists_every_window_with_its_own_verdict_and_never_hides_an_alarm():
    # The README's `trace --since 1h` case: quiet baseline windows around one alarming window.
    reports = [_report(i, 0.41, False, 1_700_000_000 + 60 * i, ("cast", "like"), 0.08) for i in range(1, 5)]
    reports.append(_report(5, 0.004, True, 1_700_000_300, ("not", "good"), -0.039))
    reports.append(_report(6, 0.6, False, 1_700_000_360, ("like", "the"), 0.07))
    text = render_range(reports, "sentiment windows of the last 1h")
    head = text.splitlines()[0]
    assert head.startswith("sentiment windows of the last 1h: ALARM in 1 of 6 windows (window 5)")
    assert "p < baseline.alarm_p_value" in head
    rows = text.splitlines()[2:]
    assert len(rows) == 6 and [row.split()[2] for row in rows] == [str(i) for i in range(1, 7)]
    alarm_row = rows[4]
    assert "ALARM" in alarm_row and "0.004" in alarm_row and "not × good (-0.039)" in alarm_row
    # Item 3: a quiet window's "top moved" is chance; it is not printed (only alarming windows carry one).
    assert all("cast × like" not in row and "like × the" not in row for row in rows)
    assert pick_detail(reports).window_id == 5  # the detail is the alarming window, not the latest quiet one


def test_a_quiet_range_says_so_and_details_the_latest_window():
    reports = [_report(i, 0.3, False, 1_700_000_000 + i) for i in range(1, 4)]
    assert render_range(reports, "last 30m").startswith("last 30m: no interaction shift alarm in 3 windows")
    assert pick_detail(reports).window_id == 3
    assert pick_detail([]) is None
    assert "no closed windows" in render_range([], "last 30m")


@pytest.mark.parametrize(
    ("p", "shown"),
    [(10 / 1001, "0.00999"), (0.01, "0.01"), (0.0099999, "0.00999"), (0.41, "0.41"), (1.0, "1"),
     (4 / 1001, "0.00399"), (0.123456, "0.123"), (0.0, "0"), (float("nan"), "nan")],
)
def test_p_values_are_rounded_down_so_a_p_below_the_threshold_never_prints_as_it(p, shown):
    assert format_p(p) == shown


def _map(rng: np.random.Generator, strength: float, n: int) -> InteractionMap:
    out = InteractionMap()
    for i in range(n):
        coef = strength + 0.05 * rng.standard_normal()
        out.add(Interactions({(0, 1): coef, (0,): 0.1}, 2), ["not", "good"], request_id=f"r{i}")
    return out


def test_the_alarm_rule_is_strict_p_equal_to_the_threshold_does_not_alarm():
    rng = np.random.default_rng(0)
    baseline, window = _map(rng, 0.5, 40), _map(rng, 0.55, 40)
    p = compare_maps(baseline, window, n_permutations=99, seed=7).p_value
    assert 0 < p < 1

    def close(alpha: float) -> bool:
        baselines = Baselines(None, lambda *a: None, lambda m: m, 1)
        baselines.set(("m", "v"), baseline)
        closer = WindowCloser(
            baselines, None, lambda *a: None, lambda m: m, lambda k: k, LockedCounter({"windows:closed": 7}),
            min_window_requests=1, n_permutations=99, alarm_p_value=alpha,
        )
        return bool(closer.close(ClosedWindow("m", "v", 0.0, 1.0, window)).alarm)

    assert close(p) is False  # p = α: no alarm (the documented rule is p < α)
    assert close(np.nextafter(p, 1.0)) is True


def test_with_no_sidecar_listening_trace_and_explain_suggest_starting_one(capsys):
    import socket

    from spex_monitor.cli import main as cli

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = ["--target", f"127.0.0.1:{port}"]
    assert cli(["trace", "--model", "sentiment", *target]) == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and "spex-monitor serve --config" in err and f"127.0.0.1:{port}" in err
    assert cli(["explain", "the plot was not good", "--model", "sentiment", *target]) == 1
    assert "spex-monitor serve --config" in capsys.readouterr().err


def test_a_stored_explanation_is_found_by_request_id_and_printed_with_its_redacted_text():
    from spex_monitor.monitor.store import ExplanationRecord
    from spex_monitor.monitor.store_lookup import find_explanation
    from spex_monitor.monitor.store_sqlite import SQLiteStore
    from spex_monitor.trace_text import exemplar_pair, render_explanation

    store = SQLiteStore(":memory:", store_text=True)
    record = ExplanationRecord(
        "r1", "m", "v1", ["not", "good"], {(0, 1): -0.5, (1,): 0.2}, 0.91, 256, trace_id="t1",
        text="it was not good <email>",
    )
    store.add_explanation(record)
    assert find_explanation(store, "m", "nope") is None and find_explanation(store, "other", "r1") is None
    found = find_explanation(store, "m", "r1")
    assert found.text == "it was not good <email>" and found.trace_id == "t1" and found.version == "v1"
    message = pb.StoredExplanation(
        request_id="r1", model="m", version="v1", time_unix=found.ts, faithfulness=0.91, inferences=256,
        trace_id="t1", feature_keys=found.keys, text=found.text, text_stored=True,
    )
    message.top.add(keys=["not", "good"], features=[0, 1], fourier=-0.5)
    message.top.add(keys=[""], features=[1], fourier=0.2)  # a word past its TTL
    text = render_explanation(message)
    assert "text: it was not good <email>" in text and "not × good" in text and "-0.500" in text
    assert "#1" in text and "trace id t1" in text
    pair = "\n".join(exemplar_pair(pb.Contributor(keys=["good", "not"]), None, message))
    assert "(none stored)" in pair and "-0.500" in pair and "R² 0.91, v1" in pair


@pytest.mark.parametrize("command", [["trace", "--model", "m"], ["baseline", "build", "--model", "m"]])
@pytest.mark.parametrize("since", ["1x", "nan", "inf", "0"])
def test_a_bad_since_is_a_usage_error_naming_the_value(command, since, capsys):
    """``baseline build --since 1x`` once passed argparse and crashed with a ValueError traceback, and
    ``trace --since nan`` sent since_unix=nan."""
    from spex_monitor.cli import main as cli

    with pytest.raises(SystemExit) as exit_info:
        cli([*command, "--since", since])
    assert exit_info.value.code == 2
    assert f"{since!r}: give a duration like 90s" in capsys.readouterr().err
