"""End to end against a real KServe ModelServer on loopback (started and stopped by PID here)."""

from __future__ import annotations

import importlib.util
import os
import signal
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("kserve") is None:  # the server runs in a subprocess; no import here
    pytest.skip("kserve is not installed", allow_module_level=True)

from spex_monitor.attribution import ProxySPEX  # noqa: E402
from spex_monitor.backends import LocalBackend  # noqa: E402
from spex_monitor.backends.oip import BackendUnavailableError, OIPBackend  # noqa: E402
from spex_monitor.examples.embedded import model_path  # noqa: E402
from spex_monitor.lenses import FieldMasker, log_odds, mask_texts, segment_text  # noqa: E402

from .kserve_replica import running_replica  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replica():
    with running_replica() as (process, endpoint):
        yield process, endpoint


def test_text_model_over_oip_matches_local_and_finds_negation(replica):
    _, endpoint = replica
    text = "the plot was not good"
    features = segment_text(text)
    local = LocalBackend.from_pretrained(model_path("sentiment-base"))
    with OIPBackend([endpoint], "sentiment", batch_rows=16) as remote:
        full = remote.infer_texts([text])
        target = int(np.argmax(full[0]))

        def value_fn(masks: np.ndarray) -> np.ndarray:
            return log_odds(remote.infer_texts(mask_texts(text, features, masks)), target)

        masks = np.random.default_rng(0).random((20, len(features))) < 0.5
        strings = mask_texts(text, features, masks)
        encoded = local.tokenizer(strings, padding=True, return_tensors="np")
        np.testing.assert_allclose(
            remote.infer_texts(strings),
            local.logits(encoded["input_ids"], encoded["attention_mask"]),
            atol=1e-4,
        )
        result = ProxySPEX(budget=32, max_order=3).explain(value_fn, len(features))
        assert sum(t.rows for t in remote.timings) >= 32
    mobius = result.to_mobius()
    top = max((k for k in mobius if len(k) == 2), key=lambda k: abs(mobius[k]))
    assert tuple(features[i].key for i in top) == ("not", "good")


def test_tabular_model_over_oip_finds_the_income_debt_interaction(replica):
    _, endpoint = replica
    fields = ["income", "debt", "age", "tenure"]
    rng = np.random.default_rng(1)
    reference = [dict(zip(fields, row, strict=True)) for row in rng.normal(size=(200, 4)).tolist()]
    record = {"income": 1.5, "debt": -1.5, "age": 0.3, "tenure": -0.2}
    masker = FieldMasker(record, reference=reference, draws=32, seed=0)
    with OIPBackend([endpoint], "credit", input_kind="fp32") as remote:

        def value_fn(masks: np.ndarray) -> np.ndarray:
            rows = masker.build(masks)
            matrix = np.array([[row[f] for f in fields] for row in rows], dtype=np.float32)
            return masker.mean_over_draws(remote.infer_matrix(matrix)[:, 1])

        result = ProxySPEX(budget=16, max_order=2).explain(value_fn, masker.n_features)
    mobius = result.to_mobius()
    top = max((k for k in mobius if len(k) == 2), key=lambda k: abs(mobius[k]))
    assert {fields[i] for i in top} == {"income", "debt"}


def test_replica_killed_mid_explanation_is_unavailable_not_a_crash(replica):
    process, endpoint = replica
    with OIPBackend(
        [endpoint], "sentiment", retries=1, backoff_s=0.01, deadline_s=2.0, breaker_failures=1
    ) as remote:
        assert remote.infer_texts(["great"]).shape == (1, 2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        with pytest.raises(BackendUnavailableError):
            remote.infer_texts(["great"] * 10)
        assert remote.health() == {endpoint: False}
