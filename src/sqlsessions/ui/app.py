"""The viewer's ASGI application: `create_app(config)` and its read-only pages.

Handlers are plain functions (Starlette runs them in its thread pool) on the synchronous
`Store` and the analytics views (`sqlsessions.analytics.read_view`, which reads through a
synchronous engine); every page is rendered server-side by Jinja2 with autoescaping on.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timezone
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sqlsessions.analytics import ensure_schema, read_view
from sqlsessions.config import StoreConfig, mask_password
from sqlsessions.errors import (
    InvalidInputError,
    SchemaNotReadyError,
    SessionNotFoundError,
    SqlSessionsError,
)
from sqlsessions.models import format_timestamp
from sqlsessions.queries import MAX_PAGE_SIZE
from sqlsessions.search import MAX_SEARCH_PAGE
from sqlsessions.store import Store
from sqlsessions.ui.charts import daily_stacked, ranked_bars
from sqlsessions.ui.conversation import conversation_entries
from sqlsessions.ui.reads import read_conversation_page, read_message_contents
from sqlsessions.ui.security import ASGIApp, ViewerGuard
from sqlsessions.ui.snippets import snippet_pieces

SESSIONS_PER_PAGE = 50
MESSAGES_PER_PAGE = 200
HITS_PER_PAGE = 20
NO_LINKS: dict[str, str | None] = {"first": None, "next": None}


def _shown_time(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, datetime):
        return format_timestamp(value.replace(microsecond=0)).replace("T", " ")
    return str(value)


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def template_environment() -> Environment:
    """Jinja2 with autoescaping for every template (all of them are HTML or SVG)."""
    env = Environment(
        loader=PackageLoader("sqlsessions.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _shown_time
    env.filters["pretty_json"] = _pretty_json
    return env


class Viewer:
    """The pages, bound to one store."""

    def __init__(self, store: Store, shown_url: str, schema: str | None) -> None:
        self.store = store
        self.shown_url = shown_url
        self.schema = schema
        self.env = template_environment()

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.update(database=self.shown_url, page=name)
        html = self.env.get_template(f"{name}.html").render(**context)
        return HTMLResponse(html, status_code=status)

    # --- sessions --------------------------------------------------------------------------

    def sessions(self, request: Request) -> Response:
        params = request.query_params
        agent = params.get("agent") or None
        metadata = _metadata_filter(params.getlist("meta"))
        after = _moment(params.get("after"), "after", end_of_day=False)
        before = _moment(params.get("before"), "before", end_of_day=True)
        limit = _positive(params.get("limit"), "limit", SESSIONS_PER_PAGE, MAX_PAGE_SIZE)
        page = self.store.list_sessions(
            agent_id=agent,
            metadata=metadata or None,
            updated_after=after,
            updated_before=before,
            limit=limit,
            cursor=params.get("cursor") or None,
        )
        next_link = None
        if page.next_cursor is not None:
            next_link = _with(params, cursor=page.next_cursor)
        return self.render(
            "sessions",
            sessions=page.sessions,
            next_link=next_link,
            first_link=_with(params, cursor=None) if params.get("cursor") else None,
            filters={
                "agent": agent or "",
                "after": params.get("after", ""),
                "before": params.get("before", ""),
                "meta": params.getlist("meta") or [""],
            },
        )

    # --- one conversation ------------------------------------------------------------------

    def conversation(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        params = request.query_params
        limit = _positive(params.get("limit"), "limit", MESSAGES_PER_PAGE, MAX_PAGE_SIZE)
        after = _position(params.get("after"), "after")
        before = _position(params.get("before"), "before")
        page = read_conversation_page(
            self.store.engine,
            session_id,
            after=after,
            before=before,
            limit=limit,
            scope=self.store.scope,
        )
        summary = read_view(
            self.store.engine,
            "session_summary",
            schema=self.schema,
            session_id=session_id,
            limit=1,
            owner=self.store.scope.owner,
        ).as_dicts()
        links = {
            "first": _with(params, after=None, before=None) if page.has_earlier else None,
            "earlier": _with(params, before=str(page.seqs[0]), after=None)
            if page.has_earlier
            else None,
            "later": _with(params, after=str(page.seqs[-1]), before=None)
            if page.has_later
            else None,
            "last": _with(params, before=str(page.head.last_seq + 1), after=None)
            if page.has_later
            else None,
        }
        return self.render(
            "conversation",
            head=page.head,
            summary=summary[0] if summary else None,
            entries=conversation_entries(page.seqs, page.messages),
            links=links,
        )

    # --- search ----------------------------------------------------------------------------

    def search(self, request: Request) -> Response:
        """Hits for `q` (optionally one agent's, newest first), keyset-paged by `cursor`.

        Bad input (a query or cursor the store refuses) is a message on this page (400).
        """
        params = request.query_params
        query = params.get("q", "")
        agent = params.get("agent") or None
        order = params.get("order") or "rank"
        form = {"q": query, "agent": agent or "", "order": order}
        if not query.strip():
            return self.render("search", form=form, hits=None, problem=None, links=NO_LINKS)
        try:
            limit = _positive(params.get("limit"), "limit", HITS_PER_PAGE, MAX_SEARCH_PAGE)
            found = self.store.search(
                query,
                agent_id=agent,
                limit=limit,
                cursor=params.get("cursor") or None,
                order=order,  # type: ignore[arg-type]  # the store refuses any other value
            )
        except InvalidInputError as exc:
            return self.render(
                "search", 400, form=form, hits=None, problem=str(exc), links=NO_LINKS
            )
        contents = read_message_contents(
            self.store.engine,
            [(hit.session_id, hit.seq) for hit in found.hits],
            self.store.scope.owner,
        )
        hits = [
            {
                "hit": hit,
                "pieces": snippet_pieces(hit.snippet, contents.get((hit.session_id, hit.seq))),
                "href": f"/sessions/{quote(hit.session_id, safe='')}"
                f"?after={hit.seq - 1}#m{hit.seq}",
            }
            for hit in found.hits
        ]
        links = {
            "first": _with(params, cursor=None) if params.get("cursor") else None,
            "next": _with(params, cursor=found.next_cursor) if found.next_cursor else None,
        }
        return self.render("search", form=form, hits=hits, problem=None, links=links)

    # --- analytics -------------------------------------------------------------------------

    def analytics(self, request: Request) -> Response:
        agent = request.query_params.get("agent") or None
        daily = read_view(
            self.store.engine, "daily_activity", schema=self.schema, agent_id=agent, limit=5000
        ).as_dicts()
        tools = read_view(
            self.store.engine, "tool_usage", schema=self.schema, agent_id=agent, limit=20000
        ).as_dicts()
        calls: dict[str, int] = {}
        for row in tools:
            calls[row["function_name"]] = calls.get(row["function_name"], 0) + row["calls"]
        charts = [
            daily_stacked("messages-per-day", "Messages per day, per agent", daily, "messages"),
            daily_stacked(
                "sessions-per-day", "Active sessions per day, per agent", daily, "sessions"
            ),
            ranked_bars("tool-calls", "Tool calls per function", calls),
        ]
        return self.render("analytics", charts=charts, agent=agent or "")

    # --- errors ----------------------------------------------------------------------------

    def error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            status, text = exc.status_code, str(exc.detail)
        elif isinstance(exc, InvalidInputError):
            status, text = 400, str(exc)
        elif isinstance(exc, SessionNotFoundError):
            status, text = 404, str(exc)
        elif isinstance(exc, SchemaNotReadyError):
            status, text = 503, str(exc)
        else:
            status, text = 500, str(exc)
        return self.render("error", status=status, status_code=status, text=text)


def _with(params: QueryParams, **changes: str | None) -> str:
    """The current query string with `changes` applied (None removes a parameter)."""
    items = [(k, v) for k, v in params.multi_items() if k not in changes]
    items.extend((k, v) for k, v in changes.items() if v is not None)
    return "?" + str(QueryParams(items)) if items else "?"


def _positive(text: str | None, field: str, default: int, maximum: int) -> int:
    if not text:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidInputError(field, "must be a whole number") from exc
    if not 1 <= value <= maximum:
        raise InvalidInputError(field, f"must be between 1 and {maximum}")
    return value


def _position(text: str | None, field: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidInputError(field, "must be a message position (a whole number)") from exc
    if value < 0:
        raise InvalidInputError(field, "must not be negative")
    return value


def _moment(text: str | None, field: str, *, end_of_day: bool) -> datetime | None:
    """A date (the whole UTC day is included) or an ISO timestamp (UTC if naive)."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end_of_day:
                day = date.fromordinal(day.toordinal() + 1)
            return datetime.combine(day, time(), tzinfo=timezone.utc)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(field, "must be a date (YYYY-MM-DD) or an ISO timestamp") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _metadata_filter(pairs: list[str]) -> dict[str, Any]:
    """`key=value` filters; a value that parses as JSON is matched as that JSON value."""
    result: dict[str, Any] = {}
    for pair in pairs:
        if not pair.strip():
            continue
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError("meta", "must be key=value")
        try:
            result[key.strip()] = json.loads(raw)
        except ValueError:
            result[key.strip()] = raw
    return result


def create_app(
    config: StoreConfig | str,
    *,
    token: str | None = None,
    store: Store | None = None,
) -> ASGIApp:
    """The viewer for the database of `config` (a StoreConfig or a URL).

    With `token`, every request must present it (see `sqlsessions.ui.security`).
    The schema is checked (or, on SQLite, migrated) now, so a bad database fails at start.
    """
    if isinstance(config, str):
        config = StoreConfig(url=config, cache_size=0)
    store = store or Store(config)
    ensure_schema(store.engine, config.schema, config.auto_migrate)
    viewer = Viewer(store, mask_password(store.engine.url), config.schema)
    static = StaticFiles(directory=str(files("sqlsessions.ui") / "static"))
    routes = [
        Route("/", viewer.sessions, methods=["GET"], name="sessions"),
        Route("/analytics", viewer.analytics, methods=["GET"], name="analytics"),
        Route("/sessions/{session_id:path}", viewer.conversation, methods=["GET"]),
        Mount("/static", app=static, name="static"),
    ]
    routes.insert(1, Route("/search", viewer.search, methods=["GET"], name="search"))
    handlers: dict[Any, Any] = {HTTPException: viewer.error, SqlSessionsError: viewer.error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.store = store
    return ViewerGuard(app, token)
