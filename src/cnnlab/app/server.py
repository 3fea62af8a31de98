"""The app and its server: :func:`create_app` puts the API (:mod:`cnnlab.app.api`), the page
(``templates/explore.html``, rendered by :mod:`cnnlab.pages`), its static files and the guard
(:mod:`cnnlab.app.guard`) together; :func:`serve` binds the socket, prints the URL, opens the browser and
runs uvicorn until Ctrl-C.

Errors are JSON ``{"error": "one line"}``: a user's mistake (:class:`cnnlab.errors.CnnlabError`) 400, an
unknown subject 404, a malformed body 422, anything else 500 -- the server keeps serving.
"""

from __future__ import annotations

import socket
import sys
import webbrowser
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from cnnlab.app.api import router
from cnnlab.app.guard import Guard, Policy, is_loopback, new_token
from cnnlab.errors import CnnlabError
from cnnlab.pages import render
from cnnlab.visualize.catalog import Catalog
from cnnlab.visualize.service import error_reply

__all__ = ["create_app", "serve", "bind", "STATIC"]

STATIC = Path(__file__).parent / "static"


def _error(status: int, message: str) -> JSONResponse:
    lines = str(message).strip().splitlines()
    return JSONResponse({"error": lines[0] if lines else "error"}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request body is not what this endpoint takes; see /docs"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')} (see /docs for this endpoint's body)"


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    async def reply(request: Request, exc: Exception) -> JSONResponse:
        return _error(*error_reply(exc))  # an unknown subject 404, a user's mistake 400, memory 507, else 500

    for kind in (CnnlabError, MemoryError):  # answered where raised, the server goes on
        app.add_exception_handler(kind, reply)
    app.add_exception_handler(Exception, reply)  # the rest: a 500 with its one line (Starlette logs it too)


def create_app(catalog: Catalog, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None) -> FastAPI:
    """The explore app for ``catalog``, accepting requests for ``host:port`` only (the Host header), and
    with ``token`` only (None: no token; needed for any host but the loopback)."""
    app = FastAPI(title="cnnlab explore", summary="CNN Explainer for your own model: the JSON API behind the page",
                  redoc_url=None)
    app.state.catalog = catalog
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    first = catalog.only

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(render("explore.html", title="cnnlab explore",
                                   config={"token": token, "subject": first}))

    _handlers(app)
    app.add_middleware(Guard, policy=Policy(host, port, token))
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); a busy port is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CnnlabError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port, or "
                          f"--port 0 for any free one") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(catalog: Catalog, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          open_browser: bool = True) -> str:
    """Serve ``catalog`` until Ctrl-C. Prints ``cnnlab explore: http://HOST:PORT/`` first (with
    ``?token=...`` when a token is needed: any host but the loopback gets one, generated unless given).
    Returns the URL."""
    if token is None and not is_loopback(host):
        token = new_token()
    sock = bind(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"cnnlab explore: {url}", flush=True)
    print(f"serving {len(catalog.entries)} subject{'s' * (len(catalog.entries) != 1)}; Ctrl-C stops", flush=True)
    app = create_app(catalog, host=host, port=port, token=token)
    if open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
    return url
