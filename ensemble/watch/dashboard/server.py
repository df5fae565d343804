"""The dashboard's HTTP server (standard library only).

Security model: it binds to 127.0.0.1 unless told otherwise, and every request needs the random
token printed at start, in the URL (``?token=...``) or in the HttpOnly, SameSite=Strict cookie
that the first such request sets (then redirected to the URL without it); anything else gets 403.
It is read-only: only GET, the database opened read-only for each request, and no file is served
by a path from the URL: the pages read run logs through the store's records of attempts.
"""
from __future__ import annotations

import json
import re
import secrets
import socket
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlencode, urlsplit

from ensemble.store import Store
from ensemble.watch.dashboard import assets, data, pages
from ensemble.watch.dashboard.layout import page
from ensemble.watch.dashboard.table import runs_table

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}
RUN_PATH = re.compile(r"/run/([0-9]{1,18})")
Response = tuple[int, str, bytes]


class DashboardServer(ThreadingHTTPServer):
    """A dashboard of the ensemble in ``setup_dir`` on ``host:port`` (port 0: a free one)."""

    daemon_threads = True

    def __init__(self, setup_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)
        self.setup_dir = setup_dir
        self.token = secrets.token_urlsafe(32)
        #: Cookies do not tell ports apart: each dashboard on a host has its own cookie name.
        self.cookie = f"ensemble_dashboard_{self.server_address[1]}"

    @property
    def url(self) -> str:
        """The URL to open, with the token."""
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/?token={self.token}"

    def allowed(self, token: str | None) -> bool:
        return token is not None and secrets.compare_digest(token.encode(), self.token.encode())


def _html(title: str, body: str, setup_dir: Path, active: str = "") -> Response:
    return HTTPStatus.OK, "text/html; charset=utf-8", page(title, body, str(setup_dir), active)


def _api(store: Store) -> Response:
    status = data.status(store, time.time())
    body = {**status, "text": pages.shown(status), "bar": pages.bar_segments(status["counts"])}
    return HTTPStatus.OK, "application/json", json.dumps(body).encode()


def _not_found(setup_dir: Path, what: str) -> Response:
    body = f'<p>{what}</p><p><a href="/">overview</a></p>'
    return HTTPStatus.NOT_FOUND, "text/html; charset=utf-8", page("Not found", body, str(setup_dir))


def _run(store: Store, setup_dir: Path, run_id: int) -> Response:
    detail = data.run_detail(store, run_id)
    if detail is None:
        return _not_found(setup_dir, f"This ensemble has no run {run_id}.")
    return _html(f"Run {run_id}", pages.run(detail, store.next_run_id() - 1), setup_dir, "runs")


def route(store: Store, setup_dir: Path, path: str, query: dict[str, list[str]]) -> Response:
    """The response to ``GET path?query`` (the token already checked)."""
    views: dict[str, Callable[[], Response]] = {
        "/": lambda: _html("Overview", pages.overview(data.overview(store, time.time())), setup_dir, "overview"),
        "/runs": lambda: _html("Runs", runs_table(store, query), setup_dir, "runs"),
        "/charts": lambda: _html("Charts", pages.charts(store), setup_dir, "charts"),
        "/api/status": lambda: _api(store),
    }
    if path in views:
        return views[path]()
    match = RUN_PATH.fullmatch(path)
    if match:
        return _run(store, setup_dir, int(match[1]))
    return _not_found(setup_dir, "There is no such page.")


class Handler(BaseHTTPRequestHandler):
    """GET only (other methods get 501 from the base class); every response needs the token."""

    server: DashboardServer
    server_version = "ensemble-dashboard"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        token = query.pop("token", [None])[-1]
        if token is not None and self.server.allowed(token):
            self._redirect(url.path + ("?" + urlencode(query, doseq=True) if query else ""))
        elif not self.server.allowed(self._cookie_token()):
            self._send(HTTPStatus.FORBIDDEN, "text/plain; charset=utf-8",
                       b"403 forbidden: open the URL with the token that 'ensemble dashboard' printed\n")
        elif url.path in ("/style.css", "/app.js"):
            css = url.path == "/style.css"
            self._send(HTTPStatus.OK, "text/css" if css else "text/javascript",
                       (assets.CSS if css else assets.JS).encode())
        else:
            self._send(*self._respond(url.path, query))

    def _respond(self, path: str, query: dict[str, list[str]]) -> Response:
        setup_dir = self.server.setup_dir
        try:
            with closing(Store.open(setup_dir, readonly=True)) as store:
                return route(store, setup_dir, path, query)
        except FileNotFoundError:
            return (HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8",
                    f"503: no ensemble in {setup_dir} any more\n".encode())
        except Exception:  # one bad page must not stop the server: its traceback goes to stderr
            traceback.print_exc(file=sys.stderr)
            return HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", b"500: see the dashboard's stderr\n"

    def _cookie_token(self) -> str | None:
        try:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get(self.server.cookie)
        except CookieError:
            return None
        return morsel.value if morsel else None

    def _redirect(self, location: str) -> None:
        cookie = f"{self.server.cookie}={self.server.token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(HTTPStatus.SEE_OTHER, "text/plain; charset=utf-8", b"", {"Location": location, "Set-Cookie": cookie})

    def _send(self, code: int, kind: str, body: bytes, extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            for name, value in {**HEADERS, "Content-Type": kind, "Content-Length": str(len(body)), **(extra or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are not logged: the first one's line would show the token."""


def serve(setup_dir: Path, host: str, port: int, out: IO[str] = sys.stdout) -> None:
    """Serve the dashboard until Ctrl-C, printing its URL first."""
    server = DashboardServer(setup_dir, host, port)
    print(f"ensemble dashboard of {setup_dir}\n  {server.url}\nCtrl-C stops it.", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("dashboard stopped", file=out, flush=True)
