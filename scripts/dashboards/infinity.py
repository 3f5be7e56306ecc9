"""The Infinity datasource's query model: the SDK ships no Infinity types, so this is its JSON, by hand."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants

from .panels import SIDECAR

TOP_INTERACTIONS_PATH = "/api/top-interactions"


@dataclass(frozen=True)
class InfinityColumn:
    selector: str
    text: str
    type: str  # "string" | "number" | "boolean"


@dataclass(frozen=True)
class InfinityQuery(cogvariants.Dataquery):
    """A JSON query of the Infinity datasource.

    ``url`` is relative: Infinity prefixes the datasource's URL (the sidecar's metrics port), so dashboards
    carry no host names. The backend parser applies ``filter_expression`` after fetching.
    """

    url: str
    columns: tuple[InfinityColumn, ...]
    filter_expression: str
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": SIDECAR,
            "type": "json",
            "source": "url",
            "format": "table",
            "parser": "backend",
            "url": self.url,
            "url_options": {"method": "GET", "data": ""},
            "root_selector": "",
            "columns": [{"selector": c.selector, "text": c.text, "type": c.type} for c in self.columns],
            "filterExpression": self.filter_expression,
        }


class Infinity(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, query: InfinityQuery) -> None:
        self._query = query

    def build(self) -> InfinityQuery:
        return self._query


TOP_INTERACTION_COLUMNS = (
    InfinityColumn("interaction", "Interaction", "string"),
    InfinityColumn("delta", "Δ mean |coef| / request", "number"),
    InfinityColumn("baseline", "Baseline", "number"),
    InfinityColumn("window", "Window", "number"),
    InfinityColumn("exemplars", "Example request ids", "string"),
    InfinityColumn("version", "Version", "string"),
    InfinityColumn("p_value", "Window p-value", "number"),
    InfinityColumn("alarm", "Alarm", "boolean"),
    InfinityColumn("model", "Model", "string"),
)
