"""Run an ASGI app under uvicorn on a background thread, so the sidecar can start and stop it like its others.

The socket is bound before the thread starts, so port 0 resolves to a real port at once and a bind error
surfaces in ``start()`` rather than in a log line on another thread. ``stop()`` asks uvicorn to exit,
lets in-flight requests finish within the grace period, and joins the thread: nothing is leaked.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import uvicorn

from ..config import TLSConfig


class ASGIThread:
    """Args:
    app: the ASGI application.
    host, port: where to listen (port 0: any free port; read ``port`` after ``start()``).
    name: the thread's name (shows up in thread dumps).
    limit_concurrency: connections plus in-flight requests beyond which uvicorn answers 503 at once.
    tls: serve HTTPS with this certificate; with ``ca_file`` client certificates are verified and
        required (``client_cert="required"``) or verified when offered (``"optional"``).
    """

    def __init__(
        self,
        app: object,
        host: str,
        port: int,
        name: str = "spex-asgi",
        limit_concurrency: int = 1024,
        tls: TLSConfig | None = None,
        client_cert: str = "required",
    ) -> None:
        self.app = app
        self.tls = tls
        self.client_cert = client_cert
        self.host = host
        self.port = port
        self.name = name
        self.limit_concurrency = limit_concurrency
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self, timeout_s: float = 10.0) -> int:
        """Bind, serve on a daemon thread, and return the bound port once uvicorn accepts connections."""
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]
        tls = {}
        if self.tls is not None and self.tls.cert_file is not None:
            required = ssl.CERT_REQUIRED if self.client_cert == "required" else ssl.CERT_OPTIONAL
            tls = {
                "ssl_certfile": str(self.tls.cert_file),
                "ssl_keyfile": str(self.tls.key_file),
                "ssl_ca_certs": str(self.tls.ca_file) if self.tls.ca_file else None,
                "ssl_cert_reqs": required if self.tls.ca_file else ssl.CERT_NONE,
            }
        config = uvicorn.Config(
            self.app,
            **tls,
            lifespan="on",
            log_level="warning",
            access_log=False,
            limit_concurrency=self.limit_concurrency,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(0.0)
                raise RuntimeError(f"{self.name}: the HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self.port

    def stop(self, grace_s: float = 5.0) -> None:
        """Ask uvicorn to exit, wait ``grace_s`` (+1 s) for in-flight requests, force it after that, and close
        the socket. Safe to call twice or before :meth:`start`.
        """
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(max(grace_s, 0.0) + 1.0)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(2.0)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    @property
    def running(self) -> bool:
        """True while the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()
