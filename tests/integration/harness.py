"""Shared pieces of the integration suite (issue 16 item 7): the sidecar settings most modules start from,
waiting on async state with a deadline, and reading a gRPC call's status. ``conftest.py`` adds the
``start_sidecar`` fixture.

Modules that need something special (TLS, a KServe replica, PostgreSQL, vLLM) still build it themselves; what
every module repeated lives here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path


def sentiment_settings(
    folder: Path,
    *,
    model: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    **sections: Any,
) -> Settings:
    """Settings for one embedded ``sentiment`` classifier (never sampled unless ``model`` says so), a store in
    ``folder``, both ports chosen by the OS, explanations in threads and a budget that never throttles.

    ``model`` updates the model entry, ``server`` the server section, and any other keyword replaces a whole
    top-level section (``engine``, ``budget``, ``windows``, ...).
    """
    config: dict[str, Any] = {
        "models": [
            {
                "name": "sentiment",
                "sampling_rate": 0.0,
                "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
                **(model or {}),
            }
        ],
        "engine": {"budget": 128, "max_order": 2},
        "budget": {"inferences_per_second": 1e7, "burst": 1e7},
        "store": {"path": str(folder / "spex.db")},
        "server": {"grpc_port": 0, "metrics_port": 0, "explain_in": "thread", **(server or {})},
    }
    config.update(sections)
    return Settings.model_validate(config)


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout_s`` seconds pass; the last answer decides."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def rpc_status(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and details a gRPC call ends with (``OK`` and ``""`` when it succeeds)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def bearer(token: str) -> list[tuple[str, str]]:
    """gRPC metadata carrying ``token`` as a bearer credential."""
    return [("authorization", f"Bearer {token}")]


def llm_settings(
    folder: Path,
    *,
    variant: str = "base",
    model: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    **sections: Any,
) -> Settings:
    """Settings for one embedded tiny LM (``grounded-lm-<variant>``) as the model ``llm``: a prompt lens on
    named segments, the local ``causal`` backend, never sampled unless ``model`` says so; otherwise as
    :func:`sentiment_settings` (store in ``folder``, OS-chosen ports, threads, a budget that never throttles).
    """
    from spex_monitor.examples.tiny_lm import model_path as lm_path

    return sentiment_settings(
        folder,
        model={
            "name": "llm",
            "lens": {"kind": "prompt", "unit": "segments"},
            "backend": {"kind": "causal", "path": str(lm_path(variant))},
            **(model or {}),
        },
        server=server,
        **sections,
    )


def issue_pki(folder: Path, identities: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    """A throwaway CA (trustme) in ``folder`` and one certificate per name in ``identities`` (name -> the
    DNS names / IPs / CN it carries): paths ``ca``, ``<name>.crt`` and ``<name>.key``."""
    import trustme

    ca = trustme.CA()
    files = {"ca": folder / "ca.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for name, names in identities.items():
        cert = ca.issue_cert(*names)
        files[f"{name}.key"] = folder / f"{name}.key"
        files[f"{name}.crt"] = folder / f"{name}.crt"
        cert.private_key_pem.write_to_path(str(files[f"{name}.key"]))
        cert.cert_chain_pems[0].write_to_path(str(files[f"{name}.crt"]))
    return files
