"""Shared machinery of the fake API servers: HTTP serving, routing, faults, request log.

The fakes are plain Python (werkzeug for HTTP), with no test-framework imports, so the
test suite, the benchmark and later the sandbox can all run them.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map
from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    """Keep-alive request handler that does not print a line per request."""

    protocol_version = "HTTP/1.1"

    def log_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        pass

    def log_error(self, *args: Any) -> None:  # noqa: D102
        pass


class DropConnection(Exception):
    """Raised by a handler to make the server close the socket without answering."""


@dataclass
class Faults:
    """Fault injection knobs.

    The actions: "500", "502", "503", "drop", "slow", "html", "truncated", "429", "429-bare"; a
    script entry may also be a callable taking the request and returning a werkzeug Response (for
    odd shapes of answer). `script` is consumed one action per request (None lets a request through);
    `rate` is the probability that a request not covered by the script gets a random
    action from `kinds`. `only_paths` limits faults to paths starting with one of them.
    """

    rate: float = 0.0
    kinds: tuple = ("500", "502", "503")
    script: Deque[Any] = field(default_factory=deque)
    slow_seconds: float = 2.0
    only_paths: tuple = ()
    seed: int = 1234
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def next_action(self, path: str) -> Any:
        if self.only_paths and not any(path.startswith(p) for p in self.only_paths):
            return None
        if self.script:
            return self.script.popleft()
        if self.rate and self._rng.random() < self.rate:
            return self._rng.choice(self.kinds)
        return None


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: Dict[str, List[str]]
    body: Any
    status: int
    time: float
    headers: Dict[str, str]
    response_headers: Dict[str, str] = field(default_factory=dict)


class FakeAPI:
    """Base class: a WSGI app with a rule map, served on 127.0.0.1 in a thread."""

    url_map: Map

    def __init__(self, time_scale: float = 1.0) -> None:
        # time_scale < 1 makes rate-limit windows pass faster: 0.01 turns a minute into 0.6 s.
        self.time_scale = time_scale
        # What the rate-limit windows read (real seconds). A test that checks where a window ends
        # sets its own clock, so that a busy machine taking long between two requests cannot move
        # them into the next window.
        self.clock: Callable[[], float] = time.monotonic
        self.faults = Faults()
        self.log: List[LoggedRequest] = []
        self.lock = threading.RLock()
        self._server: Optional[BaseWSGIServer] = None
        self._thread: Optional[threading.Thread] = None
        self.url = ""

    # -- serving -----------------------------------------------------------------
    def start(self) -> FakeAPI:
        server = make_server("127.0.0.1", 0, self.wsgi_app, threaded=True, request_handler=_QuietHandler)
        assert isinstance(server, ThreadedWSGIServer)  # threaded=True makes one
        server.daemon_threads = True  # a test that ends mid-request must not wait for its thread
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_port}"
        # stop() waits for the serving loop's next poll: 5 ms, not 50, as a test stops two fakes
        # (0.1 s per test over a thousand tests); an idle poll costs about 0.3% of a core.
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.005), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- time ----------------------------------------------------------------------
    def api_seconds(self, real_seconds: float) -> float:
        """Convert real elapsed seconds into the API's (scaled) seconds."""
        return real_seconds / self.time_scale

    def real_seconds(self, api_seconds: float) -> float:
        return api_seconds * self.time_scale

    # -- request handling ------------------------------------------------------------
    def wsgi_app(self, environ: Dict[str, Any], start_response: Callable) -> Any:
        request = Request(environ)
        action = self.faults.next_action(request.path)
        try:
            response = action(request) if callable(action) else self._fault_response(action)
            if response is None:
                response = self._dispatch(request)
        except DropConnection:
            response = None
        if response is None:  # drop: close the socket without a word
            self._log(request, 0, {})
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            # werkzeug insists on a status; writing it to the closed socket fails quietly.
            start_response("500 Dropped", [("Connection", "close")])
            return []
        self._log(request, response.status_code, dict(response.headers))
        return response(environ, start_response)

    def _fault_response(self, action: Optional[str]) -> Optional[Response]:
        if action is None:
            return None
        if action in ("500", "502", "503"):
            return self.json_response({"message": "Server Error"}, int(action))
        if action == "drop":
            raise DropConnection()
        if action == "slow":
            time.sleep(self.faults.slow_seconds)
            return None  # then answer normally, too late for a short client timeout
        if action == "html":
            return Response(
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
                status=200,
                content_type="text/html",
            )
        if action in ("429", "429-bare"):  # a storm, with or without Retry-After
            response = self.rate_limited_response()
            if action == "429-bare":
                response.headers.pop("Retry-After", None)
            return response
        if action == "truncated":
            return Response('{"results": [{"id": "1", "prop', status=200, content_type="application/json")
        raise ValueError(f"unknown fault {action!r}")

    def _dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return self.not_found(request)
        except HTTPException as exc:
            return self.json_response({"message": exc.description}, exc.code or 500)
        denied = self.before_request(request, endpoint)
        if denied is not None:
            return denied
        handler = getattr(self, "on_" + endpoint)
        with self.lock:
            return handler(request, **args)

    def rate_limited_response(self) -> Response:
        """What this API answers over its limit; subclasses give their own shape."""
        return self.json_response({"message": "Too Many Attempts."}, 429, {"Retry-After": "1"})

    def before_request(self, request: Request, endpoint: str) -> Optional[Response]:
        """Auth and rate limiting; subclasses override."""
        return None

    def not_found(self, request: Request) -> Response:
        return self.json_response({"message": "Not found"}, 404)

    def _log(self, request: Request, status: int, response_headers: Dict[str, str]) -> None:
        body: Any = None
        raw = request.get_data(cache=True)
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            query={k: request.args.getlist(k) for k in request.args},
            body=body,
            status=status,
            time=time.monotonic(),
            headers=dict(request.headers),
            response_headers=response_headers,
        )
        with self.lock:
            self.log.append(entry)

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def json_response(data: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
        return Response(json.dumps(data), status=status, headers=headers or {}, content_type="application/json")

    @staticmethod
    def json_body(request: Request) -> Any:
        try:
            return json.loads(request.get_data(cache=True) or b"null")
        except ValueError:
            return None

    def requests_to(self, method: str, path_prefix: str) -> List[LoggedRequest]:
        with self.lock:
            return [r for r in self.log if r.method == method and r.path.startswith(path_prefix)]


class WindowCounter:
    """Counts hits in fixed windows of `window` API-seconds (time-scaled).

    The first window opens at the first request, not when the fake is built: how long a test
    takes to start its client (a subprocess on a busy machine, say) must not change what it sees."""

    def __init__(self, api: FakeAPI, limit: int, window: float) -> None:
        self.api = api
        self.limit = limit
        self.window = window
        self._start: Optional[float] = None
        self.used = 0

    def _roll(self) -> None:
        now = self.api.clock()
        if self._start is None or self.api.api_seconds(now - self._start) >= self.window:
            self._start = now
            self.used = 0

    def try_take(self, n: int = 1) -> bool:
        """Take n hits if the window has room for all of them."""
        self._roll()
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def remaining(self) -> int:
        self._roll()
        return max(0, self.limit - self.used)

    def seconds_to_reset(self) -> float:
        """API-seconds until the window resets."""
        self._roll()
        assert self._start is not None
        elapsed = self.api.api_seconds(self.api.clock() - self._start)
        return max(0.0, self.window - elapsed)


class RollingCounter:
    """Counts hits in a rolling window of `window` API-seconds (HubSpot's ten-secondly rule)."""

    def __init__(self, api: FakeAPI, limit: int, window: float) -> None:
        self.api = api
        self.limit = limit
        self.window = window
        self._hits: Deque[float] = deque()

    def _trim(self) -> None:
        horizon = self.api.clock() - self.api.real_seconds(self.window)
        while self._hits and self._hits[0] <= horizon:
            self._hits.popleft()

    def try_take(self) -> bool:
        self._trim()
        if len(self._hits) >= self.limit:
            return False
        self._hits.append(self.api.clock())
        return True

    def remaining(self) -> int:
        self._trim()
        return max(0, self.limit - len(self._hits))
