"""The ``models[].training`` section: a model's retrainable training set for ``spex-monitor trace --data``.
Re-exported by :mod:`spex_monitor.config`."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator

from .config_server import Strict


class TrainingConfig(Strict):
    """``models[].training``: the model's retrainable training set, for ``spex-monitor trace --data``.

    Read by the CLI only (the sidecar never imports the factory): ``trace --data --config sidecar.yaml``
    imports it and runs the data lens over its groups (:mod:`spex_monitor.lenses.data_trace`).
    """

    factory: str = Field(
        description="'package.module:function' returning a spex_monitor.lenses.training.TrainingSet "
        "(importable by the CLI's Python: installed, or on PYTHONPATH)",
    )
    budget: int = Field(1000, ge=64, le=100_000, description="head retrains for the fit over training groups")
    row_budget: int = Field(
        300, ge=0, le=100_000, description="head retrains over the top groups' rows: 0 (skip) or ≥ 40"
    )
    top_groups: int = Field(3, ge=1, le=50, description="groups whose rows are ranked")
    cache_dir: Path | None = Field(
        None, description="where data-lens results are cached (default: ~/.cache/spex-monitor/data-trace)"
    )

    @model_validator(mode="after")
    def _factory_and_row_budget(self) -> TrainingConfig:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", self.factory):
            raise ValueError(f"factory: give it as 'package.module:function', got {self.factory!r}")
        if 0 < self.row_budget < 40:  # ProxySPEX's smallest design (lenses.data_trace.MIN_ROW_BUDGET)
            raise ValueError(f"row_budget: 0 (skip the rows) or at least 40, got {self.row_budget}")
        return self
