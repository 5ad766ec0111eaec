"""The panel's aiohttp application: the page, its script, the JSON API and the audio.

Every route but the script checks the join token when the panel has one (``?token=``; 403
without it). A panel without a token answers a request that reached it on a loopback address
only under a loopback ``Host`` (403 otherwise): a web page elsewhere cannot rebind its own name
to 127.0.0.1 and read or rate the round. Every answer carries a strict Content-Security-Policy
(scripts only from this server, no inline script), ``no-referrer`` (the token in the link must
not travel on) and ``no-store``. The log is read and written in the loop's worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from cosyvoice_lab import html, jsontext
from cosyvoice_lab.errors import LogError, TakeNotFound
from cosyvoice_lab.panel.rounds import (
    InviteRequired,
    Round,
    RoundFull,
    parse_choice_request,
    parse_rater,
    parse_rating_request,
    token_ok,
)
from cosyvoice_lab.panel.settings import PanelSettings, is_loopback

SCRIPT_PATH = "/static/panel.js"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; media-src 'self'; "
    "style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Context:
    """What the handlers share: the log, the round, the token (None: not required), the experiment,
    whether raters may join by name (``open_enrolment``: loopback only) and the settings."""

    def __init__(
        self,
        log: Any,
        experiment: str,
        round: Round,
        token: str | None,
        *,
        open_enrolment: bool = True,
        settings: PanelSettings | None = None,
    ) -> None:
        self.log, self.experiment, self.round, self.token = log, experiment, round, token
        self.open_enrolment, self.settings = open_enrolment, settings or PanelSettings()
        self.served: set[Any] = set()  # transports that sent at least one whole request (server.py)
        # One rating at a time per session: the log keeps them in the order the page is answered,
        # so the rating a rater sees last is the one the log holds last (a double click, two tabs).
        self._rating_locks: dict[str, asyncio.Lock] = {}

    def rating_lock(self, session_id: str) -> asyncio.Lock:
        return self._rating_locks.setdefault(session_id, asyncio.Lock())

    def audio_url(self, audio_id: str) -> str:
        return f"/audio/{audio_id}" + (f"?token={self.token}" if self.token else "")

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread (log access blocks)."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


NO_TOKEN_PAGE = (
    "This listening panel opens only from the link its organiser sent you: the link carries a key "
    "(?token=…). Ask them for it, and open the whole link."
)
REBOUND_PAGE = "This listening panel answers this machine's own addresses only: open it at 127.0.0.1."


def _refused(request: web.Request, message: str, page: str) -> web.Response:
    """403: JSON (``message``) for the API and the audio; for a person who opened the page itself,
    a short page (``page``) that says what to do, never anything of the round."""
    if request.method == "GET" and request.path == "/":
        return web.Response(
            status=403, text=html.render("panel_refused.html.j2", message=page), content_type="text/html"
        )
    return _error(403, message)


def rebound(request: web.Request) -> bool:
    """Whether a request reached a loopback address under a ``Host`` that is not a loopback name
    (DNS rebinding: the browser of someone on this machine, sent by a page of another site)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname or not is_loopback(str(sockname[0])):
        return False
    host = host_name(request.headers.get("Host", ""))
    if host is None:  # a Host header that is no host
        return True
    return not (is_loopback(host) or host == socket.gethostname().lower())  # Panel.url on a wildcard


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header, lower case, without port or IPv6 brackets; None if malformed.
    (Parsed here: aiohttp before 3.9.2 cannot build ``request.url`` from a Host with a port.)"""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :] if end > 0 else "?"
        return value[1:end] if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else None
    name, _, port = value.partition(":")
    if not name or ":" in port or (port and not port.isdigit()) or any(c in name for c in "/?#@ "):
        return None
    return name


CONTEXT = web.AppKey("context", Context)


def make_app(ctx: Context) -> web.Application:
    """The application serving ``ctx``'s round."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx.served.add(request.transport)  # a whole request head arrived: no longer "unfinished"
        if request.path != SCRIPT_PATH and not token_ok(ctx.token, request.query.get("token")):
            response: web.StreamResponse = _refused(
                request, "this panel needs the join token of its link (?token=...)", NO_TOKEN_PAGE
            )
        elif ctx.token is None and rebound(request):
            response = _refused(
                request, "this panel answers this machine's own addresses only (open 127.0.0.1)", REBOUND_PAGE
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # 404 of an unknown route, 405, 413: JSON too
                response = _error(exc.status, exc.reason)
            except LogError:  # the log's database is down or busy (any step of any route): JSON too
                response = _error(503, "the log is busy or unavailable: try again in a moment")
        response.headers.update(HEADERS)
        return response

    app = web.Application(middlewares=[guard], client_max_size=ctx.settings.max_body_bytes)
    app[CONTEXT] = ctx
    app.router.add_get("/", _page)
    app.router.add_get(SCRIPT_PATH, _script)
    app.router.add_get("/api/session", _session)
    app.router.add_post("/api/rating", _rating)
    app.router.add_post("/api/choice", _choice)
    app.router.add_get("/audio/{audio_id}", _audio)
    return app


async def _page(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    # open_enrolment: the name form, said to be open to anyone on this machine; else invites only
    page = html.render("panel.html.j2", kind=ctx.round.kind, script=SCRIPT_PATH, open_enrolment=ctx.open_enrolment)
    return web.Response(text=page, content_type="text/html")


async def _script(request: web.Request) -> web.Response:
    body = resources.files("cosyvoice_lab.panel").joinpath("static", "panel.js").read_bytes()
    return web.Response(body=body, content_type="text/javascript", charset="utf-8")


async def _session(request: web.Request) -> web.Response:
    """``?invite=TOKEN`` (a personal link) or, with open enrolment, ``?rater=NAME``."""
    ctx = request.app[CONTEXT]
    invite = request.query.get("invite")
    try:
        if invite is not None:
            session = await ctx.call(ctx.round.session_by_invite, invite)
            if session is None:
                return _error(403, "this invite link is not valid for this round: ask the organiser for yours")
        elif not ctx.open_enrolment:
            return _error(403, "this panel admits invited raters only: open the personal link the organiser sent you")
        else:
            session = await ctx.call(ctx.round.join, parse_rater(request.query.get("rater")))
    except ValueError as exc:
        return _error(400, str(exc))
    except (RoundFull, InviteRequired) as exc:
        return _error(403, str(exc))
    except LogError:
        return _error(503, "the log is busy or unavailable: try again in a moment")
    return web.json_response(session.answer(ctx.round.kind, ctx.round.options, ctx.audio_url))


async def _body(request: web.Request) -> object:
    """The request's JSON body, read within ``body_timeout_s``.

    Raises:
        web.HTTPRequestTimeout: the body did not arrive in time. ValueError: not JSON.
    """
    ctx = request.app[CONTEXT]
    if request.content_length is not None and request.content_length > ctx.settings.max_body_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=ctx.settings.max_body_bytes, actual_size=request.content_length)
    try:
        raw = await asyncio.wait_for(request.read(), ctx.settings.body_timeout_s)  # read() refuses > client_max_size
    except asyncio.TimeoutError:
        raise web.HTTPRequestTimeout(reason="the request body did not arrive in time") from None
    return jsontext.loads(raw)  # ValueError: not JSON, not UTF-8, or nested too deep


async def _answer(request: web.Request, parse: Callable[[object], tuple[str, str, Any]], kinds: tuple[str, ...]):
    """Parse, check and store one answer; returns the JSON response."""
    ctx = request.app[CONTEXT]
    if ctx.round.kind not in kinds:
        other = "/api/choice" if ctx.round.kind == "pair" else "/api/rating"
        return _error(400, f"this is a {ctx.round.kind} round: answer with POST {other}")
    try:
        body = await _body(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"an answer is at most {request.app[CONTEXT].settings.max_body_bytes} bytes")
    except ValueError:
        return _error(400, "the body is not JSON")
    try:
        session_token, item_id, value = parse(body)
    except ValueError as exc:
        return _error(400, str(exc))
    session = ctx.round.session(session_token)
    item = ctx.round.item(session, item_id) if session else None
    if session is None or item is None:
        return _error(404, "no such session" if session is None else "no such item in this session")
    async with ctx.rating_lock(session.session_id):
        try:
            await ctx.call(store_answer, ctx.log, ctx.round.kind, session, item, value)
        except TakeNotFound:
            return _error(404, "this take is no longer in the log")
        except LogError:  # e.g. the database stayed busy: the page says "not saved, try again"
            return _error(503, "the log could not save this answer just now; try again")
        answered, total = ctx.round.record_answer(session, item, value)
    key = "choice" if ctx.round.kind == "pair" else "rating"
    return web.json_response({"ok": True, "item": item.item_id, key: value, "rated": answered, "total": total})


def store_answer(log: Any, kind: str, session: Any, item: Any, value: Any) -> None:
    """Write one answer, once: a pair choice in ``round_answers``; a star rating in ``ratings``
    with its session, position and whether the showing is a hidden repeat (what
    ``log.ratings.to_dataframe()``, the evidence and the rater consistency read)."""
    if kind == "pair":
        preferred = None if value == "none" else item.take_ids[0 if value == "first" else 1]
        log.rounds.answer(session.session_id, item.position, preferred=preferred)
        return
    log.ratings.add(item.take_id, value, rater=session.rater, kind=kind, session_id=session.session_id,
                    position=item.position, hidden_repeat=item.repeat)  # fmt: skip


async def _rating(request: web.Request) -> web.Response:
    return await _answer(request, parse_rating_request, ("preference", "adherence"))


async def _choice(request: web.Request) -> web.Response:
    return await _answer(request, parse_choice_request, ("pair",))


async def _audio(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    take_id = ctx.round.take_of_audio(request.match_info["audio_id"])
    if take_id is None:
        return _error(404, "no such audio")
    try:
        take = await ctx.call(ctx.log.get, take_id)  # a LogError here: the database (503, by the guard)
    except TakeNotFound:
        return _error(404, "this preview is not in the log")
    try:
        audio = await ctx.call(lambda: take.audio)
    except LogError:  # the take's preview is gone from the store
        return _error(404, "this preview is not in the log")
    if audio is None:
        return _error(404, "this take has no preview")
    if audio.format == "pcm":  # raw PCM: browsers play it as WAV
        audio = await ctx.call(audio.to_wav)
    return web.Response(body=audio.data, content_type=audio.mime)
