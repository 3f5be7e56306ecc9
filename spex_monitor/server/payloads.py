"""Decode the JSON bodies KServe's inference logger forwards: V1 and OIP-V2, requests and responses.

The logger copies the HTTP body of each call unchanged, so the receiver sees whatever protocol the model
server speaks: V1 (``{"instances": [...]}`` / ``{"predictions": [...]}``) or OIP-V2 (``{"inputs": [tensor]}``
/ ``{"outputs": [tensor]}`` with ``name``, ``shape``, ``datatype``, ``data``). A model's
:class:`~spex_monitor.config.EventsMapping` says which tensor or key holds the text or the fields and how to
read a prediction. Decoding is pure and linear in the body; every failure is a :class:`PayloadError` whose
message starts with the path of the offending part (``inputs[input].data: ...``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..config import EventsMapping
from .observations import label_from_logits, label_from_probabilities

Protocol = Literal["v1", "v2"]


class PayloadError(ValueError):
    """A body that does not fit the protocol or the model's mapping; the message names the part."""


@dataclass(frozen=True)
class InputRow:
    """One decoded input row: its text, or its fields (name → value)."""

    text: str | None = None
    fields: dict[str, float] | None = None


@dataclass(frozen=True)
class DecodedRequest:
    """A logged request body: the protocol it spoke, its rows, and its V2 ``model_name`` if it carried one."""

    protocol: Protocol
    rows: list[InputRow]
    model_name: str | None = None


@dataclass(frozen=True)
class OutputRow:
    """One decoded prediction: the label and its confidence, when the output gives one."""

    label: str
    confidence: float | None = None


@dataclass(frozen=True)
class DecodedResponse:
    """A logged response body: the protocol, its rows and the model name and version it carried."""

    protocol: Protocol
    rows: list[OutputRow]
    model_name: str | None = None
    model_version: str | None = None


def model_name_of(body: Any) -> str | None:
    """The V2 ``model_name`` a body carries (responses always, requests never), else ``None``."""
    name = body.get("model_name") if isinstance(body, dict) else None
    return name if isinstance(name, str) and name else None


def _is_v2(tensors: Any) -> bool:
    return isinstance(tensors, list) and all(isinstance(t, dict) and "data" in t for t in tensors)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def _tensor_rows(tensor: dict, where: str) -> list[list[Any]]:
    """A V2 tensor's data as rows: ``shape[0]`` rows of ``prod(shape[1:])`` values (row-major)."""
    params = tensor.get("parameters")
    if isinstance(params, dict) and "binary_data_size" in params:
        raise PayloadError(f"{where}: binary tensor data is not supported (turn off binary_data)")
    flat = _flatten(tensor.get("data"))
    shape = tensor.get("shape")
    if shape is None:
        return [[v] for v in flat]
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise PayloadError(f"{where}.shape: expected a list of non-negative integers, got {shape!r}")
    if not shape:
        shape = [1]
    width = math.prod(shape[1:])
    if shape[0] * width != len(flat):
        raise PayloadError(f"{where}.data: {len(flat)} values do not fill shape {shape}")
    return [flat[i * width : (i + 1) * width] for i in range(shape[0])]


def _number(value: Any, where: str) -> float:
    number = None
    if isinstance(value, bool | int | float):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if number is None or not math.isfinite(number):
        raise PayloadError(f"{where}: expected a finite number, got {_short(value)}")
    return number


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} ({len(text)} characters)"


def _text(value: Any, where: str) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected a string, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------------------------ requests
def decode_request(body: Any, mapping: EventsMapping, want: Literal["text", "fields"]) -> DecodedRequest:
    """Rows of text (``want="text"``) or fields (``want="fields"``) from a V1 or V2 request body."""
    if not isinstance(body, dict):
        raise PayloadError("data: expected a JSON object (a V1 or OIP-V2 request body)")
    if _is_v2(body.get("inputs")):
        return DecodedRequest("v2", _v2_inputs(body["inputs"], mapping, want), model_name_of(body))
    instances = body.get("instances", body.get("inputs"))
    if not isinstance(instances, list):
        raise PayloadError("data: expected V1 'instances' (a list) or OIP-V2 'inputs' (a list of tensors)")
    rows = []
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        if want == "text":
            if isinstance(instance, dict):
                key = mapping.text_input or ""
                if key not in instance:
                    raise PayloadError(f"{where}.{key}: missing (models[].events.text_input)")
                rows.append(InputRow(text=_text(instance[key], f"{where}.{key}")))
            else:
                rows.append(InputRow(text=_text(instance, where)))
            continue
        values = {}
        for name, key in mapping.fields.items():
            if isinstance(key, int):
                if not isinstance(instance, list) or not -len(instance) <= key < len(instance):
                    raise PayloadError(f"{where}[{key}]: no such column for field {name!r}")
                values[name] = _number(instance[key], f"{where}[{key}]")
            else:
                if not isinstance(instance, dict) or key not in instance:
                    raise PayloadError(f"{where}.{key}: missing for field {name!r}")
                values[name] = _number(instance[key], f"{where}.{key}")
        rows.append(InputRow(fields=values))
    return DecodedRequest("v1", rows)


def _v2_inputs(tensors: list[dict], mapping: EventsMapping, want: str) -> list[InputRow]:
    by_name = {str(t.get("name")): t for t in tensors}

    def tensor(name: str | None) -> tuple[dict, str]:
        if name is None:
            if not tensors:
                raise PayloadError("inputs: empty")
            return tensors[0], f"inputs[{tensors[0].get('name')}]"
        if name not in by_name:
            raise PayloadError(f"inputs: no tensor named {name!r}; got {sorted(by_name)}")
        return by_name[name], f"inputs[{name}]"

    if want == "text":
        found, where = tensor(mapping.text_input)
        return [InputRow(text=_text(row, f"{where}.data")) for row in _tensor_rows(found, where)]
    columns: dict[str, list[float]] = {}
    for name, key in mapping.fields.items():
        if isinstance(key, int):
            found, where = tensor(mapping.row_input)
            rows = _tensor_rows(found, where)
            if rows and not -len(rows[0]) <= key < len(rows[0]):
                raise PayloadError(f"{where}: no column {key} for field {name!r} (rows of {len(rows[0])})")
            columns[name] = [_number(row[key], f"{where}.data") for row in rows]
        else:
            found, where = tensor(key)
            columns[name] = [
                _number(_text_or_value(row), f"{where}.data") for row in _tensor_rows(found, where)
            ]
    counts = {len(v) for v in columns.values()}
    if len(counts) > 1:
        raise PayloadError(f"inputs: fields have different row counts {sorted(counts)}")
    n = counts.pop() if counts else 0
    return [InputRow(fields={name: values[i] for name, values in columns.items()}) for i in range(n)]


def _text_or_value(row: list[Any]) -> Any:
    return row[0] if len(row) == 1 else row


# ----------------------------------------------------------------------------------------------- responses
def decode_response(
    body: Any, mapping: EventsMapping, labels: Mapping[int, str] | None = None
) -> DecodedResponse:
    """Predicted label and confidence per row from a V1 or V2 response body."""
    if not isinstance(body, dict):
        raise PayloadError("data: expected a JSON object (a V1 or OIP-V2 response body)")
    version = body.get("model_version")
    version = str(version) if isinstance(version, str | int) and str(version) else None
    if _is_v2(body.get("outputs")):
        outputs = body["outputs"]
        if mapping.output is None:
            if not outputs:
                raise PayloadError("outputs: empty")
            chosen = outputs[0]
        else:
            chosen = next((t for t in outputs if t.get("name") == mapping.output), None)
            if chosen is None:
                names = sorted(str(t.get("name")) for t in outputs)
                raise PayloadError(f"outputs: no tensor named {mapping.output!r}; got {names}")
        where = f"outputs[{chosen.get('name')}]"
        datatype = str(chosen.get("datatype", "")).upper()
        rows = [
            _read_prediction(_text_or_value(row), mapping, labels, f"{where}.data", datatype)
            for row in _tensor_rows(chosen, where)
        ]
        return DecodedResponse("v2", rows, model_name_of(body), version)
    predictions = body.get("predictions", body.get("outputs"))
    if not isinstance(predictions, list):
        raise PayloadError("data: expected V1 'predictions' (a list) or OIP-V2 'outputs' (a list of tensors)")
    rows = [_read_prediction(p, mapping, labels, f"predictions[{i}]", "") for i, p in enumerate(predictions)]
    return DecodedResponse("v1", rows, model_name_of(body), version)


def _read_prediction(
    value: Any, mapping: EventsMapping, labels: Mapping[int, str] | None, where: str, datatype: str
) -> OutputRow:
    kind = mapping.output_kind
    if isinstance(value, dict):
        if mapping.output is not None and mapping.output in value:
            return _read_prediction(value[mapping.output], mapping, labels, f"{where}.{mapping.output}", "")
        if "label" in value:
            score = next((value[k] for k in ("score", "confidence", "probability") if k in value), None)
            return OutputRow(str(value["label"]), None if score is None else _number(score, f"{where}.score"))
        if value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()):
            best = max(value, key=lambda name: value[name])  # {label: probability}
            return OutputRow(str(best), float(value[best]))
        raise PayloadError(f"{where}: an object without 'label' (set models[].events.output)")
    if kind == "label" or (kind == "auto" and (isinstance(value, str) or datatype == "BYTES")):
        return OutputRow(_text(value, where) if not isinstance(value, int | float) else str(value))
    if isinstance(value, list):
        if len(value) == 1:
            return _read_prediction(value[0], mapping, labels, where, datatype)
        scores = [_number(v, where) for v in value]
        if not scores:
            raise PayloadError(f"{where}: empty prediction")
        if kind == "class_index":
            raise PayloadError(f"{where}: output_kind is class_index but the prediction is a vector")
        as_probs = kind == "probabilities" or (
            kind == "auto" and all(0.0 <= s <= 1.0 for s in scores) and abs(sum(scores) - 1.0) < 1e-3
        )
        label, confidence = (label_from_probabilities if as_probs else label_from_logits)(scores, labels)
        return OutputRow(label, confidence)
    number = _number(value, where)
    integral = datatype.startswith(("INT", "UINT")) or _integral(value)
    if kind == "class_index" or (kind == "auto" and integral):
        index = int(number)
        return OutputRow((labels or {}).get(index, str(index)))
    if kind in ("probabilities", "logits"):  # one score: the positive class of a binary model
        p = number if kind == "probabilities" else 1.0 / (1.0 + math.exp(-number))
        if not 0.0 <= p <= 1.0:
            raise PayloadError(f"{where}: probability {number} outside [0, 1]")
        label, confidence = label_from_probabilities([1.0 - p, p], labels)
        return OutputRow(label, confidence)
    return OutputRow("")  # auto, a real-valued score: no class to report


def _integral(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
