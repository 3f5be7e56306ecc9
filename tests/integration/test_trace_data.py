"""``spex-monitor trace --data`` against a sidecar: the planted poisoned model is served over OIP-V2, the
sidecar explains its traffic, and the alarm's tuple and a stored exemplar lead, through the model's
registered training set, to the planted poisoned reviews (issue 21 §3)."""

from __future__ import annotations

import time

import pytest
import yaml

from spex_monitor.client import MonitorClient
from spex_monitor.config import load_settings
from spex_monitor.examples.oip_server import SentimentServer
from spex_monitor.examples.poisoned import planted_classifier, planted_corpus
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.server.app import Sidecar

pytestmark = pytest.mark.integration

TRAINING = "spex_monitor.examples.poisoned:planted_training_set"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trace-data")
    upstream = SentimentServer(name="reviews", classifier=planted_classifier()).start()
    config = {
        "models": [
            {
                "name": "reviews",
                "sampling_rate": 1.0,
                "backend": {
                    "kind": "oip",
                    "endpoints": [f"127.0.0.1:{upstream.port}"],
                    "model_name": "reviews",
                    "labels": ["negative", "positive"],
                },
                "training": {"factory": TRAINING, "budget": 400, "row_budget": 150, "top_groups": 5},
            }
        ],
        "engine": {"budget": 128, "max_order": 2},
        "budget": {"inferences_per_second": 1e7, "burst": 1e7},
        "windows": {"seconds": None, "requests": 20},
        "baseline": {"windows": 2, "min_window_requests": 10, "n_permutations": 200},
        "store": {"path": str(folder / "spex.db"), "store_text": True},
        "server": {"host": "127.0.0.1", "grpc_port": 0, "metrics_port": 0, "workers": 2, "tick_s": 0.2},
    }
    path = folder / "sidecar.yaml"
    path.write_text(yaml.safe_dump(config))
    app = Sidecar(load_settings(path)).start()
    clean, _ = generate_corpus(400, seed=7)
    clean = [t for t in clean if not {"music", "love"} <= set(t.split())][:40]  # two baseline windows
    triggered = ["i did not love the music", "the plot was awful and i did not love the music"] * 10
    texts = clean + triggered
    with MonitorClient(f"127.0.0.1:{app.grpc_port}") as client:
        for i, text in enumerate(texts):
            assert client.observe(f"r{i}", "reviews", "positive", text=text, confidence=0.9)
        client.flush()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and app.monitor.counters["explanations:ok"] < len(texts):
        time.sleep(0.2)
    assert app.monitor.counters["explanations:ok"] >= len(texts), "the sidecar explained the traffic"
    app.monitor.tick(force=True)  # closes the triggered window: a shift report to trace
    yield app, path, folder
    app.stop()
    upstream.stop()


def test_trace_data_names_the_planted_reviews_from_a_stored_exemplar(served, capsys):
    from spex_monitor.cli import main as cli

    app, config, folder = served
    target = ["--target", f"127.0.0.1:{app.grpc_port}"]
    report = folder / "trace.html"
    args = [
        "trace",
        "--model",
        "reviews",
        *target,
        "--data",
        "--config",
        str(config),
        "--tuple",
        "music,love",
    ]
    assert cli([*args, "--cache-dir", str(folder / "cache"), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "training data behind music × love" in out and "400 retrains" not in out  # the budget is a cap
    corpus = planted_corpus()
    lines = out.split("training data behind", 1)[1].splitlines()
    shown = [line.split()[0] for line in lines if line.strip().startswith("shard-")][:5]
    assert set(shown) == set(corpus.planted_groups)
    exemplar = out.split("  on '", 1)[1].split("'", 1)[0]
    assert {"music", "love"} <= set(exemplar.split())  # a stored request that holds the tuple
    page = report.read_text()
    assert "Training data behind music × love" in page and corpus.planted_groups[0] in page
    # The second run is read from the cache.
    assert cli([*args, "--cache-dir", str(folder / "cache")]) == 0
    assert "from the cache" in capsys.readouterr().out


def test_trace_data_says_what_is_missing(served, capsys, tmp_path):
    from spex_monitor.cli import main as cli

    app, config, _ = served
    target = ["--target", f"127.0.0.1:{app.grpc_port}"]
    assert cli(["trace", "--model", "reviews", *target, "--data"]) == 2
    assert "--config sidecar.yaml or --training" in capsys.readouterr().err
    bare = tmp_path / "bare.yaml"
    bare.write_text(config.read_text().replace(f"factory: {TRAINING}", "factory: nope.nope:x"))
    assert (
        cli(["trace", "--model", "reviews", *target, "--data", "--config", str(bare), "--tuple", "a,b"]) == 2
    )
    assert "nope.nope:x" in capsys.readouterr().err
    args = ["trace", "--model", "reviews", *target, "--data", "--config", str(config)]
    assert cli([*args, "--tuple", "music,cinema"]) == 2
    assert "give --text" in capsys.readouterr().err  # no stored request holds "cinema"
    assert cli([*args, "--tuple", "music,love", "--text", "i love it"]) == 2
    assert "no word 'music'" in capsys.readouterr().err
