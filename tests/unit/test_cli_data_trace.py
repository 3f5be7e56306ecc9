"""``trace --data`` plumbing: which tuple is traced, where the options come from, and how it is shown."""

from __future__ import annotations

import argparse

import pytest
import yaml

from spex_monitor.cli_data_trace import DataTraceError, pick_tuple, render_data_trace, training_options
from spex_monitor.html_report import data_trace_html, decisive_html
from spex_monitor.lenses.data_trace import DataTrace, RankedExample, RankedGroup
from spex_monitor.protocol.v1 import monitor_pb2 as pb


def _report(decisive: bool) -> pb.ShiftReport:
    report = pb.ShiftReport(top_contributors=[pb.Contributor(keys=["not", "good"])], decisive_tested=4)
    if decisive:
        report.decisive_tuples.add(keys=["music", "love"], window_decisive=9, window_opportunities=12)
    return report


def test_the_top_decisive_tuple_comes_first_then_the_top_contributor():
    assert pick_tuple(_report(decisive=True)) == ("music", "love")
    assert pick_tuple(_report(decisive=False)) == ("not", "good")
    with pytest.raises(DataTraceError, match="give --tuple"):
        pick_tuple(pb.ShiftReport())


def _args(**kw) -> argparse.Namespace:
    base = {"model": "m", "config": "", "training": "", "data_budget": 0, "cache_dir": ""}
    return argparse.Namespace(**{**base, **kw})


def test_options_come_from_the_model_training_section_and_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    model = {"name": "m", "backend": {"kind": "local", "path": str(tmp_path)}}
    training = {"factory": "pkg.mod:fn", "budget": 300, "row_budget": 0, "cache_dir": str(tmp_path / "c")}
    path.write_text(yaml.safe_dump({"models": [{**model, "training": training}]}))
    factory, options = training_options(_args(config=str(path)))
    assert factory == "pkg.mod:fn" and options["budget"] == 300 and options["row_budget"] == 0
    assert options["cache_dir"] == tmp_path / "c"
    factory, options = training_options(_args(config=str(path), training="a.b:c", data_budget=99))
    assert factory == "a.b:c" and options["budget"] == 99
    path.write_text(yaml.safe_dump({"models": [model]}))
    with pytest.raises(DataTraceError, match=r"models\[m\].training is not set"):
        training_options(_args(config=str(path)))
    with pytest.raises(DataTraceError, match="no model named 'x'"):
        training_options(_args(config=str(path), model="x"))
    path.write_text(yaml.safe_dump({"models": [{**model, "training": {"factory": "no colon"}}]}))
    with pytest.raises(DataTraceError, match="factory"):
        training_options(_args(config=str(path)))


def test_the_data_trace_and_decisive_tuples_are_shown_in_text_and_html():
    found = DataTrace(
        keys=("music", "love"), exemplar="i did not <love> the music", target=1, target_name="positive",
        training_set="planted", effect_all=2.5, groups=[RankedGroup("shard-7", 0.4, 9, [3])],
        group_pairs=[("shard-7", "shard-9", -0.2)], examples=[RankedExample(3, "shard-7", "x <b>", 1, 0.3)],
        faithfulness=0.9, budget=100, retrains=101, seconds=1.5,
    )  # fmt: skip
    text = render_data_trace(found)
    assert "training data behind music × love" in text and "shard-7" in text and "+2.500" in text
    page = data_trace_html(found)
    assert "&lt;love&gt;" in page and "x &lt;b&gt;" in page and "<b>" not in page
    section = decisive_html(_report(decisive=True))
    assert "music × love" in section and "9/12" in section
    assert decisive_html(pb.ShiftReport()) == ""


def test_flags_are_checked_before_anything_runs(capsys):
    from spex_monitor.cli import main as cli
    from spex_monitor.cli_data_trace import parse_tuple

    assert parse_tuple(" Music!, LOVE ") == ("music", "love")
    for bad in ("", ",", "a,a", "a,b,c,d,e,f,g"):
        with pytest.raises(DataTraceError, match="1 to 6 distinct"):
            parse_tuple(bad)
    offline = ["trace", "--model", "m", "--data", "--text", "i did not love the music"]
    assert cli([*offline, "--tuple", "music,love", "--training", "nope.nope:f"]) == 2
    assert "nope.nope:f" in capsys.readouterr().err
    assert cli(["trace", "--model", "m", "--tuple", "a,b"]) == 2
    assert "--tuple is a data-lens option: add --data" in capsys.readouterr().err
    assert cli(["trace", "--model", "m", "--data", "--request", "r1"]) == 2
    assert "does not combine with --request" in capsys.readouterr().err
    for budget in ("10", "-5", "x"):
        with pytest.raises(SystemExit):
            cli([*offline, "--tuple", "a,b", "--data-budget", budget])
        assert "from 64 to 100000" in capsys.readouterr().err
