"""The OpenAI-compatible pass-through proxy (issue 18 §2) in front of a scripted upstream whose every byte and
every pause the test controls: bodies pass byte-identical, a streamed answer's first chunk reaches the
client while the upstream is still holding the rest, errors and headers pass through, bodies are bounded,
the caller's token is forwarded, and the served generation is observed and explained by the sidecar's tiny
LM. The same proxy in front of the real vLLM is in ``test_openai_proxy_vllm.py``."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading

import grpc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from spex_monitor.examples.explain_generation import USER
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.asgi_thread import ASGIThread

from .harness import llm_settings, wait_until

pytestmark = pytest.mark.integration

SYSTEM = "use the documents to answer the question ."
CHAT_ANSWER = b'{"id":"chatcmpl-7","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"5"},"finish_reason":"stop"}]}'  # noqa: E501
CHUNKS = [
    b'data: {"id":"cmpl-9","choices":[{"index":0,"text":"5"}]}\n\n',
    b'data: {"id":"cmpl-9","choices":[{"index":0,"text":" ."}]}\n\n',
    b"data: [DONE]\n\n",
]


class Upstream:
    """A scripted OpenAI-compatible server: what it received, and a gate that holds a stream after its first
    chunk until the test opens it (or 20 s pass)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.held_until_opened: list[bool] = []
        self.seen_headers: list[dict[str, str]] = []
        self.seen_bodies: list[bytes] = []

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            self.seen_headers.append(dict(request.headers))
            self.seen_bodies.append(await request.body())
            body = json.loads(self.seen_bodies[-1])
            if body.get("model") == "refuse":
                return JSONResponse({"error": {"message": "no such model", "code": 404}}, status_code=404)
            return Response(CHAT_ANSWER, media_type="application/json", headers={"x-upstream": "yes"})

        async def completions(request: Request) -> Response:
            self.seen_headers.append(dict(request.headers))
            self.seen_bodies.append(await request.body())

            async def stream():
                yield CHUNKS[0]
                for _ in range(2000):  # 20 s at most
                    if self.gate.is_set():
                        break
                    await asyncio.sleep(0.01)
                self.held_until_opened.append(self.gate.is_set())
                for chunk in CHUNKS[1:]:
                    yield chunk

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def models(request: Request) -> Response:
            return Response(b'{"object":"list","data":[{"id":"llm"}]}', media_type="application/json")

        return Starlette(
            routes=[
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/v1/completions", completions, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"]),
                Route("/health", lambda r: Response(b""), methods=["GET"]),
            ]
        )


@pytest.fixture(scope="module")
def upstream():
    scripted = Upstream()
    server = ASGIThread(scripted.app(), "127.0.0.1", 0, name="scripted-upstream")
    port = server.start()
    scripted.url = f"http://127.0.0.1:{port}"
    yield scripted
    server.stop()


@pytest.fixture(scope="module")
def sidecar(upstream, tmp_path_factory):
    from spex_monitor.server.app import Sidecar

    settings = llm_settings(
        tmp_path_factory.mktemp("openai-proxy"),
        model={"sampling_rate": 1.0},
        engine={"budget": 64, "max_order": 2},
        server={"openai_proxy_port": 0, "openai_upstream": upstream.url, "openai_max_body_bytes": 4096},
        # a few calls only: keep segment names seen once (the default shows them as <rare>)
        store={"path": str(tmp_path_factory.mktemp("openai-store") / "spex.db"), "min_document_frequency": 1},
    )
    app = Sidecar(settings).start()
    yield app
    app.stop()


def _chat_body(model: str = "llm") -> dict:
    return {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "temperature": 0.7,
    }


def _segments_header() -> str:
    spans = {}
    for name, text in (
        ("doc:acme", "the office of acme is on floor 3 ."),
        ("question", "which floor is two"),
    ):
        start = USER.index(text)
        spans[name] = [1, start, start + len(text)]
    return json.dumps(spans)


def test_answers_pass_through_byte_identical_and_the_generation_is_explained(sidecar, upstream):
    proxy = f"http://127.0.0.1:{sidecar.openai_proxy_port}"
    headers = {"authorization": "Bearer sk-caller", "x-spex-segments": _segments_header()}
    direct = httpx.post(f"{upstream.url}/v1/chat/completions", json=_chat_body(), timeout=30)
    proxied = httpx.post(f"{proxy}/v1/chat/completions", json=_chat_body(), headers=headers, timeout=30)
    assert proxied.status_code == direct.status_code == 200
    assert proxied.content == direct.content == CHAT_ANSWER
    assert proxied.headers["x-upstream"] == "yes" and proxied.headers["content-type"] == "application/json"
    assert upstream.seen_headers[-1]["authorization"] == "Bearer sk-caller"  # loopback upstream: forwarded
    assert upstream.seen_bodies[-1] == upstream.seen_bodies[-2]  # the request body went on unchanged
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))

    def explained():
        reply = stub.ListExplanations(pb.ListExplanationsRequest(model="llm"), timeout=10)
        return [e for e in reply.explanations if e.request_id == "chatcmpl-7"]

    assert wait_until(explained, timeout_s=60), "the proxied generation was not explained"
    top = explained()[0].top
    assert {k for term in top for k in term.keys} <= {"doc:acme", "question"}
    assert any(set(term.keys) == {"doc:acme", "question"} for term in top)


def test_a_stream_reaches_the_client_chunk_by_chunk(sidecar, upstream):
    proxy = f"http://127.0.0.1:{sidecar.openai_proxy_port}"
    upstream.gate.clear()
    body = {"model": "llm", "prompt": "question : which floor ?", "stream": True}
    with httpx.stream("POST", f"{proxy}/v1/completions", json=body, timeout=30) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        chunks = reply.iter_raw()
        first = next(chunks)  # arrives while the upstream still holds the rest
        upstream.gate.set()
        rest = b"".join(chunks)
    assert upstream.held_until_opened[-1] is True  # the upstream was still waiting when chunk 1 arrived
    assert first == CHUNKS[0] and first + rest == b"".join(CHUNKS)


def test_errors_health_and_models_pass_through(sidecar, upstream):
    proxy = f"http://127.0.0.1:{sidecar.openai_proxy_port}"
    refused = httpx.post(f"{proxy}/v1/chat/completions", json=_chat_body("refuse"), timeout=30)
    direct = httpx.post(f"{upstream.url}/v1/chat/completions", json=_chat_body("refuse"), timeout=30)
    assert refused.status_code == 404 and refused.content == direct.content
    assert httpx.get(f"{proxy}/v1/models", timeout=10).content == b'{"object":"list","data":[{"id":"llm"}]}'
    assert httpx.get(f"{proxy}/health", timeout=10).status_code == 200
    assert httpx.get(f"{proxy}/nope", timeout=10).status_code == 404  # the upstream's own 404


def test_bodies_are_bounded_and_unknown_models_are_counted(sidecar, upstream):
    proxy = f"http://127.0.0.1:{sidecar.openai_proxy_port}"
    big = {"model": "llm", "prompt": "x " * 4000}
    reply = httpx.post(f"{proxy}/v1/completions", json=big, timeout=30)
    assert reply.status_code == 413 and "openai_max_body_bytes" in reply.json()["error"]["message"]
    before = sidecar.metrics.dropped.labels("", "unknown_model")._value.get()
    assert httpx.post(f"{proxy}/v1/chat/completions", json=_chat_body("other"), timeout=30).status_code == 200
    assert wait_until(
        lambda: sidecar.metrics.dropped.labels("", "unknown_model")._value.get() == before + 1, timeout_s=10
    )


def test_an_unreachable_upstream_answers_502(tmp_path, start_sidecar):
    settings = llm_settings(
        tmp_path, server={"openai_proxy_port": 0, "openai_upstream": "http://127.0.0.1:9"}
    )
    sidecar = start_sidecar(settings)
    reply = httpx.post(
        f"http://127.0.0.1:{sidecar.openai_proxy_port}/v1/chat/completions", json=_chat_body(), timeout=30
    )
    assert reply.status_code == 502 and reply.json()["error"]["type"] == "upstream_error"


def test_tls_on_both_sides_of_the_proxy(tmp_path, start_sidecar, pki):
    """The proxy port speaks mutual TLS (server.tls, inherited), the upstream is https:// verified against
    openai_upstream_tls.ca_file; answers and streams pass unchanged and the caller's token goes upstream.
    An upstream whose certificate is not trusted gets no request: the caller gets 502."""
    from spex_monitor.config_server import TLSConfig

    scripted = Upstream()
    server = ASGIThread(
        scripted.app(), "127.0.0.1", 0, name="tls-upstream",
        tls=TLSConfig(cert_file=pki["server.crt"], key_file=pki["server.key"]),
    )  # fmt: skip
    port = server.start()
    try:
        upstream_url = f"https://localhost:{port}"
        tls = {"cert_file": pki["server.crt"], "key_file": pki["server.key"], "ca_file": pki["ca"]}
        sidecar = start_sidecar(
            llm_settings(
                tmp_path,
                server={
                    "openai_proxy_port": 0,
                    "openai_upstream": upstream_url,
                    "openai_upstream_tls": {"ca_file": pki["ca"]},
                    "tls": tls,
                },
            )
        )
        proxy = f"https://localhost:{sidecar.openai_proxy_port}"
        with pytest.raises(httpx.HTTPError):  # plaintext to the proxy port
            httpx.post(f"http://127.0.0.1:{sidecar.openai_proxy_port}/v1/chat/completions", json=_chat_body())
        anonymous = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises(httpx.HTTPError):  # TLS without a client certificate: mutual TLS refuses it
            httpx.post(f"{proxy}/v1/chat/completions", json=_chat_body(), verify=anonymous, timeout=10)
        identified = ssl.create_default_context(cafile=str(pki["ca"]))
        identified.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
        client = httpx.Client(verify=identified, timeout=30)
        with client:
            reply = client.post(
                f"{proxy}/v1/chat/completions", json=_chat_body(), headers={"authorization": "Bearer sk-tls"}
            )
            assert reply.status_code == 200 and reply.content == CHAT_ANSWER
            assert scripted.seen_headers[-1]["authorization"] == "Bearer sk-tls"  # https upstream: forwarded
            scripted.gate.clear()
            body = {"model": "llm", "prompt": "question : which floor ?", "stream": True}
            with client.stream("POST", f"{proxy}/v1/completions", json=body) as streamed:
                chunks = streamed.iter_raw()
                first = next(chunks)  # through TLS on both sides, while the upstream holds the rest
                scripted.gate.set()
                rest = b"".join(chunks)
            assert scripted.held_until_opened[-1] is True and first + rest == b"".join(CHUNKS)
        # the same upstream without the CA: its certificate is not trusted, nothing is sent to it
        seen = len(scripted.seen_bodies)
        untrusting = start_sidecar(
            llm_settings(
                tmp_path / "untrusting",
                server={"openai_proxy_port": 0, "openai_upstream": upstream_url},
            )
        )
        untrusting_url = f"http://127.0.0.1:{untrusting.openai_proxy_port}/v1/chat/completions"
        refused = httpx.post(untrusting_url, json=_chat_body(), timeout=30)
        assert refused.status_code == 502 and refused.json()["error"]["type"] == "upstream_error"
        assert len(scripted.seen_bodies) == seen
    finally:
        server.stop()
