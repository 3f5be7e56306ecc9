"""The one alarm a window raises covers the decisive test: a window whose backdoor pair only the decisive
test sees alarms through :class:`WindowCloser`; both parts are stored (rare words redacted) and come back
in the ``ShiftReport`` message, fresh or stored."""

from __future__ import annotations

import json

import pytest
from decisive_traffic import TRIGGER, planted_map

from spex_monitor.monitor.baselines import Baselines
from spex_monitor.monitor.closing import WindowCloser
from spex_monitor.monitor.records import LockedCounter
from spex_monitor.monitor.store_sqlite import SQLiteStore
from spex_monitor.monitor.vocabulary import RARE
from spex_monitor.monitor.windows import ClosedWindow
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.server.messages import report_message, stored_report_message


def test_a_decisive_incident_alarms_and_both_tests_are_stored_and_sent(tmp_path):
    baseline, window = planted_map(40, 400), planted_map(41, 200, trigger=True)
    public_key = lambda key: tuple(sorted(RARE if k == "cast" else k for k in key))  # noqa: E731
    with SQLiteStore(tmp_path / "s.db") as store:
        baselines = Baselines(None, lambda *a: None, lambda m: m, 1)
        baselines.set(("m", "v"), baseline)
        closer = WindowCloser(
            baselines,
            store,
            lambda fn, *args: fn(*args),
            lambda m: m,
            public_key,
            LockedCounter(),
            min_window_requests=1,
            n_permutations=199,
            alarm_p_value=0.01,
        )
        result = closer.close(ClosedWindow("m", "v", 0.0, 1.0, window))
        report = result.report
        assert report is not None and report.decisive is not None
        assert report.shift_p_value > 0.5  # the mean-mass test does not see it (seeded: p = 0.785)
        assert result.alarm and report.p_value < 0.01
        assert report.p_value == pytest.approx(report.decisive.p_value / 0.2)
        assert report.decisive.p_value < 0.005 and report.decisive.tuples[0].key == TRIGGER
        stored = store.reports("m", version="v", limit=1)[-1]
    assert stored["alarm"] and stored["shift_p_value"] == report.shift_p_value
    top = stored["decisive"]["tuples"][0]
    assert top["keys"] == [RARE, "enjoy"] and top["window_decisive"] >= 3
    message = stored_report_message("m", "v", json.loads(json.dumps(stored)))
    assert message.decisive_p_value == report.decisive.p_value
    assert list(message.decisive_tuples[0].keys) == [RARE, "enjoy"]
    from spex_monitor.trace_text import decisive_lines

    shown = decisive_lines(message)  # what `spex-monitor trace` prints for it
    assert f"decisive {RARE} × enjoy" in shown[1] and "decisive interactions p = " in shown[0]
    fresh = report_message("m", "v", 1, report, True)
    assert fresh.shift_p_value == report.shift_p_value and fresh.decisive_tested == report.decisive.tested
    assert list(fresh.decisive_tuples[0].keys) == list(TRIGGER)  # the caller maps fresh keys (report_rpcs)
    old = stored_report_message("m", "v", {"window_id": 1, "score": 0.0, "p_value": 0.2, "ts": 1.0})
    assert old.shift_p_value == 0.2 and old.decisive_p_value == 1.0 and not old.decisive_tuples


def test_the_trace_names_the_decisive_tuple_behind_the_alarm_and_both_tests(tmp_path):
    from spex_monitor.trace_text import decisive_lines

    message = pb.ShiftReport(
        p_value=0.0015, shift_p_value=0.785, decisive_p_value=0.0003, decisive_tested=6, alarm=True
    )
    message.decisive_tuples.add(
        keys=["cast", "enjoy"], baseline_decisive=0, baseline_opportunities=15,
        window_decisive=4, window_opportunities=5, p_value=0.0001, adjusted_p_value=0.0003,
    )  # fmt: skip
    lines = decisive_lines(message)
    assert "interaction shift p = 0.785" in lines[0] and "decisive interactions p = 0.0003 " in lines[0]
    assert "over 6 tuples" in lines[0]
    assert "cast × enjoy" in lines[1] and "baseline 0/15, window 4/5" in lines[1]
    # a report without the decisive test (an LLM's, or stored before it existed) adds nothing
    assert decisive_lines(pb.ShiftReport(p_value=0.2, shift_p_value=0.2)) == []
