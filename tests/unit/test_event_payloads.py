"""KServe inference-logger bodies (V1 and OIP-V2) decode into the monitor's inputs and outputs."""

from __future__ import annotations

import math

import pytest

from spex_monitor.config import EventsMapping
from spex_monitor.server.payloads import PayloadError, decode_request, decode_response

TEXT = EventsMapping()
LABELS = {0: "negative", 1: "positive"}


def _v2_tensor(name, datatype, shape, data):
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


# ------------------------------------------------------------------------------------------------ requests
def test_v1_text_instances_bare_and_keyed():
    decoded = decode_request({"instances": ["not good", "great"]}, TEXT, "text")
    assert decoded.protocol == "v1" and [r.text for r in decoded.rows] == ["not good", "great"]
    keyed = decode_request({"instances": [{"review": "dull"}]}, EventsMapping(text_input="review"), "text")
    assert [r.text for r in keyed.rows] == ["dull"]
    with pytest.raises(PayloadError, match=r"^instances\[0\]\.input: missing"):
        decode_request({"instances": [{"review": "dull"}]}, TEXT, "text")
    with pytest.raises(PayloadError, match=r"^instances\[1\]: expected a string, got int"):
        decode_request({"instances": ["ok", 3]}, TEXT, "text")


def test_v1_fields_by_key_and_by_column():
    mapping = EventsMapping(fields={"age": "age", "income": "income"})
    decoded = decode_request({"instances": [{"age": 30, "income": "1.5"}]}, mapping, "fields")
    assert decoded.rows[0].fields == {"age": 30.0, "income": 1.5}
    columns = EventsMapping(fields={"age": 0, "income": 2})
    decoded = decode_request({"instances": [[30, 9, 2.5], [40, 9, 3.5]]}, columns, "fields")
    assert [r.fields for r in decoded.rows] == [{"age": 30.0, "income": 2.5}, {"age": 40.0, "income": 3.5}]
    with pytest.raises(PayloadError, match=r"^instances\[0\]\[2\]: no such column for field 'income'"):
        decode_request({"instances": [[30]]}, columns, "fields")
    with pytest.raises(PayloadError, match=r"^instances\[0\]\.age: expected a finite number, got 'old'"):
        decode_request({"instances": [{"age": "old", "income": 1}]}, mapping, "fields")


def test_v2_bytes_text_tensor():
    body = {"id": "r1", "inputs": [_v2_tensor("input", "BYTES", [2], ["the plot was not good", "fun"])]}
    decoded = decode_request(body, TEXT, "text")
    assert decoded.protocol == "v2" and [r.text for r in decoded.rows] == ["the plot was not good", "fun"]
    nested = {"inputs": [_v2_tensor("input", "BYTES", [2, 1], [["a"], ["b"]])]}
    assert [r.text for r in decode_request(nested, TEXT, "text").rows] == ["a", "b"]


def test_v2_errors_name_the_tensor():
    with pytest.raises(PayloadError, match=r"^inputs: no tensor named 'input'; got \['text'\]"):
        decode_request({"inputs": [_v2_tensor("text", "BYTES", [1], ["x"])]}, TEXT, "text")
    with pytest.raises(PayloadError, match=r"^inputs\[input\]\.data: 1 values do not fill shape \[2\]"):
        decode_request({"inputs": [_v2_tensor("input", "BYTES", [2], ["x"])]}, TEXT, "text")
    binary = _v2_tensor("input", "BYTES", [1], [])
    binary["parameters"] = {"binary_data_size": 12}
    with pytest.raises(PayloadError, match="binary tensor data is not supported"):
        decode_request({"inputs": [binary]}, TEXT, "text")
    with pytest.raises(PayloadError, match="^data: expected a JSON object"):
        decode_request(["not", "an", "object"], TEXT, "text")
    with pytest.raises(PayloadError, match="^data: expected V1 'instances'"):
        decode_request({"something": 1}, TEXT, "text")


def test_v2_fields_by_tensor_and_by_row_columns():
    named = EventsMapping(fields={"age": "age", "income": "income"})
    body = {
        "inputs": [
            _v2_tensor("age", "FP32", [2], [30, 40]),
            _v2_tensor("income", "FP32", [2, 1], [[1.0], [2.0]]),
        ]
    }
    rows = decode_request(body, named, "fields").rows
    assert [r.fields for r in rows] == [{"age": 30.0, "income": 1.0}, {"age": 40.0, "income": 2.0}]
    columns = EventsMapping(fields={"age": 0, "income": 2}, row_input="x")
    body = {"inputs": [_v2_tensor("x", "FP32", [2, 3], [30, 0, 1.5, 40, 0, 2.5])]}
    rows = decode_request(body, columns, "fields").rows
    assert [r.fields for r in rows] == [{"age": 30.0, "income": 1.5}, {"age": 40.0, "income": 2.5}]
    ragged = {"inputs": [_v2_tensor("age", "FP32", [2], [1, 2]), _v2_tensor("income", "FP32", [1], [3])]}
    with pytest.raises(PayloadError, match="different row counts"):
        decode_request(ragged, named, "fields")


# ----------------------------------------------------------------------------------------------- responses
def test_v1_predictions_of_every_shape():
    def one(prediction, mapping=TEXT, labels=LABELS):
        row = decode_response({"predictions": [prediction]}, mapping, labels).rows[0]
        return row.label, None if row.confidence is None else round(row.confidence, 4)

    p = 1 / (1 + math.exp(-2.0))
    assert one([0.0, 2.0]) == ("positive", round(p, 4))  # logits -> softmax
    assert one([0.8, 0.2]) == ("negative", 0.8)  # sums to 1 -> probabilities
    assert one(1) == ("positive", None)  # class index
    assert one(7) == ("7", None)  # index without a name
    assert one("positive") == ("positive", None)  # a label
    assert one({"label": "negative", "score": 0.7}) == ("negative", 0.7)
    assert one({"negative": 0.1, "positive": 0.9}) == ("positive", 0.9)
    assert one(0.83) == ("", None)  # a real-valued score: no class in auto mode
    assert one(0.83, EventsMapping(output_kind="probabilities")) == ("positive", 0.83)
    assert one(0.0, EventsMapping(output_kind="logits")) == ("negative", 0.5)
    assert one({"probs": [0.3, 0.7]}, EventsMapping(output="probs")) == ("positive", 0.7)
    with pytest.raises(PayloadError, match=r"^predictions\[0\]: an object without 'label'"):
        one({"probs": [0.3, 0.7]})
    with pytest.raises(PayloadError, match=r"^predictions\[0\]: output_kind is class_index"):
        one([0.3, 0.7], EventsMapping(output_kind="class_index"))


def test_v2_outputs():
    body = {
        "model_name": "sentiment",
        "model_version": "3",
        "outputs": [
            _v2_tensor("output", "FP32", [2, 2], [0.0, 2.0, 3.0, 0.0]),
            _v2_tensor("label", "BYTES", [2], ["pos", "neg"]),
            _v2_tensor("index", "INT64", [2], [1, 0]),
        ],
    }
    decoded = decode_response(body, TEXT, LABELS)
    assert decoded.protocol == "v2" and (decoded.model_name, decoded.model_version) == ("sentiment", "3")
    assert [r.label for r in decoded.rows] == ["positive", "negative"]
    assert decoded.rows[1].confidence == pytest.approx(1 / (1 + math.exp(-3.0)))
    assert [r.label for r in decode_response(body, EventsMapping(output="label"), LABELS).rows] == [
        "pos",
        "neg",
    ]
    assert [r.label for r in decode_response(body, EventsMapping(output="index"), LABELS).rows] == [
        "positive",
        "negative",
    ]
    with pytest.raises(PayloadError, match=r"^outputs: no tensor named 'probs'; got \['index', 'label'"):
        decode_response(body, EventsMapping(output="probs"), LABELS)
