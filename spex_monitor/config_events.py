"""``models[].events``: how KServe inference-logger payloads map onto a model's input and output.

Kept beside :mod:`.config` (which re-exports :class:`EventsMapping`) so that module stays one screenful per
section; only :mod:`.server.payloads` and :mod:`.server.events` read it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .config_server import Strict


class EventsMapping(Strict):
    """How KServe inference-logger payloads (V1 or OIP-V2 JSON) map onto this model's input and output.

    The receiver reads text (text lens) or fields (fields lens) from the logged request and the predicted
    label and confidence from the logged response; the explanation itself is always recomputed by the
    model's configured backend, so only what the lens and the drift statistics need is read.
    """

    inference_services: list[str] = Field(
        default_factory=list,
        description="InferenceService names (the ce-inferenceservicename attribute) whose events belong to "
        "this model; empty: the InferenceService is named like the model",
    )
    text_input: str | None = Field(
        "input",
        min_length=1,
        description="V2: name of the BYTES input tensor holding the text; V1: key of the text in each "
        "object instance (a bare string instance is the text itself)",
    )
    fields: dict[str, str | int] = Field(
        default_factory=dict,
        description="field name -> where its value is: a V2 input tensor name / V1 instance key, or an "
        "integer column of a row (a V1 list instance, or the V2 tensor named by row_input)",
    )
    row_input: str | None = Field(
        None, description="V2: the input tensor whose rows are records, for integer columns in fields"
    )
    output: str | None = Field(
        None,
        min_length=1,
        description="V2: the output tensor to read (default: the first); V1: the key to read when each "
        "prediction is an object",
    )
    output_kind: Literal["auto", "label", "class_index", "logits", "probabilities"] = Field(
        "auto",
        description="how to read a prediction; auto: strings are labels, integers class indexes, vectors "
        "probabilities when they sum to 1 and logits otherwise",
    )
    labels: list[str] | None = Field(
        None,
        min_length=1,
        description="class names by index (default: the local model's id2label, else the index itself)",
    )
    version_from: Literal["config", "model_version", "endpoint"] = Field(
        "config",
        description="where the observation's version comes from: the model's configured version, the V2 "
        "response's model_version, or KServe's ce-endpoint attribute (default/canary)",
    )
