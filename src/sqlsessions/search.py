"""Full-text search over message content: statements and the sans-IO operation.

PostgreSQL matches ``to_tsvector(language, content)`` (GIN expression index, migration 0006)
against ``websearch_to_tsquery``; SQLite matches the FTS5 table ``messages_fts`` that
triggers keep in sync with ``messages``. Both accept the same query language: words (all
must match), ``"a phrase"``, ``OR`` between alternatives, ``-word`` to exclude. Pages are
keyset-paginated on (rank or created_at, session_id, seq), so a cursor stays valid while
new messages arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Float,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.sql.selectable import TextualSelect

from sqlsessions import statements as sql
from sqlsessions.errors import InvalidInputError
from sqlsessions.models import MAX_SESSION_ID_LENGTH, Role, check_text
from sqlsessions.operations import Operation, Steps, Transaction, utcnow
from sqlsessions.queries import check_limit
from sqlsessions.schema import UTCDateTime, messages, sessions
from sqlsessions.scope import Scope

MAX_QUERY_LENGTH = 1000
MAX_SEARCH_PAGE = 200
MARK_START = "<mark>"
MARK_END = "</mark>"
SearchOrder = Literal["rank", "newest"]
INDEXED_LANGUAGE = "simple"
INDEXED_VECTOR = "search_vector"
"""PostgreSQL: the generated column holding to_tsvector('simple', content)."""

M = messages.c
S = sessions.c


@dataclass(frozen=True)
class SearchHit:
    """One matching message: where it is, a highlighted snippet, and how well it matched."""

    session_id: str
    seq: int
    role: Role
    agent_id: str
    created_at: datetime
    snippet: str
    """Matched words wrapped in <mark>...</mark>; the text around them, shortened."""
    rank: float
    """Higher is a better match (ts_rank on PostgreSQL, minus BM25 on SQLite): compare
    ranks within one result list only."""


@dataclass(frozen=True)
class SearchPage:
    """A page of hits (best or newest first); pass `next_cursor` for the next page."""

    hits: list[SearchHit]
    next_cursor: str | None


# --- query text ----------------------------------------------------------------------------

_TOKEN = re.compile(r'-?"[^"]*"?|\S+')


def fts5_query(query: str) -> str | None:
    """The web-search syntax as an FTS5 expression (every term quoted: no syntax errors).

    None when nothing is left to match (e.g. only exclusions).
    """
    groups: list[list[str]] = [[]]
    excluded: list[str] = []
    for token in _TOKEN.findall(query):
        if token == "OR":
            if groups[-1]:
                groups.append([])
            continue
        negative = token.startswith("-") and len(token) > 1
        words = token[1:] if negative else token
        words = words.strip('"')
        if not words.strip():
            continue
        quoted = '"' + words.replace('"', '""') + '"'
        (excluded if negative else groups[-1]).append(quoted)
    alternatives = [" AND ".join(group) for group in groups if group]
    if not alternatives:
        return None
    expression = " OR ".join(f"({alt})" for alt in alternatives)
    if excluded:
        expression = f"({expression}) NOT ({' OR '.join(excluded)})"
    return expression


# --- cursors -------------------------------------------------------------------------------


def encode_cursor(order: SearchOrder, key: Any, session_id: str, seq: int) -> str:
    raw = json.dumps(
        [order, key.isoformat() if isinstance(key, datetime) else key, session_id, seq]
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: SearchOrder) -> tuple[Any, str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_order, key, session_id, seq = json.loads(raw)
        if cursor_order != order:
            raise ValueError("cursor of another order")
        if order == "newest":
            key = datetime.fromisoformat(key)
        elif not isinstance(key, (int, float)) or isinstance(key, bool):
            raise ValueError("rank")
        if not isinstance(seq, int) or not isinstance(session_id, str):
            raise ValueError("position")
        return key, session_id, seq
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidInputError(
            "cursor", f"not a cursor returned by search with order={order!r}"
        ) from exc


# --- statements ----------------------------------------------------------------------------


def _postgresql_statement(
    language: str, order: SearchOrder, agent: bool, after: bool
) -> Select[Any]:
    config: Any = literal_column(f"'{language}'::regconfig")
    tsquery = func.websearch_to_tsquery(config, bindparam("q"))
    # The stored column (migration 0006) holds the 'simple' vector; another language is
    # computed from the text (and served by an index the user creates for it).
    vector: Any = (
        literal_column(INDEXED_VECTOR)
        if language == INDEXED_LANGUAGE
        else func.to_tsvector(config, M.content)
    )
    rank = func.ts_rank(vector, tsquery).cast(Float()).label("rank")
    matches = (
        select(M.session_id, M.seq, M.role, M.created_at, M.content, S.agent_id, rank)
        .join_from(messages, sessions, (S.id == M.session_id) & (S.owner == M.owner))
        .where(vector.op("@@")(tsquery), sql.in_scope(), M.owner == sql.owner_param(), sql.live())
    )
    if agent:
        matches = matches.where(S.agent_id == bindparam("agent_id"))
    found = matches.subquery("found")
    key = found.c.rank if order == "rank" else found.c.created_at
    page = select(found)
    if after:
        cursor_key = bindparam("after_key", type_=Float() if order == "rank" else UTCDateTime())
        page = page.where(
            tuple_(key, found.c.session_id, found.c.seq)
            < tuple_(cursor_key, bindparam("after_sid"), bindparam("after_seq"))
        )
    page_rows = (
        page.order_by(key.desc(), found.c.session_id.desc(), found.c.seq.desc())
        .limit(bindparam("page_limit"))
        .subquery("page")
    )
    options = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=24, MinWords=8"
    snippet = func.ts_headline(
        config, page_rows.c.content, func.websearch_to_tsquery(config, bindparam("q")), options
    )
    page_key = page_rows.c.rank if order == "rank" else page_rows.c.created_at
    return select(
        page_rows.c.session_id,
        page_rows.c.seq,
        page_rows.c.role,
        page_rows.c.agent_id,
        page_rows.c.created_at,
        snippet.label("snippet"),
        page_rows.c.rank.label("match_rank"),
    ).order_by(page_key.desc(), page_rows.c.session_id.desc(), page_rows.c.seq.desc())


def _sqlite_statement(order: SearchOrder, agent: bool, after: bool) -> TextualSelect:
    # Never the bare name `rank` in WHERE/ORDER BY: FTS5 tables have a hidden column by
    # that name (bm25, lower is better), which SQLite would pick over our alias.
    key = "-bm25(messages_fts)" if order == "rank" else "m.created_at"
    conditions = [
        "messages_fts MATCH :q",
        "(s.expires_at IS NULL OR s.expires_at > :now)",
        "m.owner = :scope_owner",
        "(:scope_agent = '' OR s.agent_id = :scope_agent)",
    ]
    if agent:
        conditions.append("s.agent_id = :agent_id")
    if after:
        conditions.append(f"({key}, m.session_id, m.seq) < (:after_key, :after_sid, :after_seq)")
    statement = text(
        "SELECT m.session_id, m.seq, m.role, s.agent_id, m.created_at, "
        f"snippet(messages_fts, 0, '{MARK_START}', '{MARK_END}', '…', 24) AS snippet, "
        "-bm25(messages_fts) AS match_rank "
        "FROM messages_fts "
        "JOIN messages m ON m.rowid = messages_fts.rowid "
        "JOIN sessions s ON s.id = m.session_id AND s.owner = m.owner "
        f"WHERE {' AND '.join(conditions)} "
        f"ORDER BY {key} DESC, m.session_id DESC, m.seq DESC "
        "LIMIT :page_limit"
    )
    binds = [bindparam("now", type_=UTCDateTime())]
    if after:
        key_type: Any = Float() if order == "rank" else UTCDateTime()
        binds.append(bindparam("after_key", type_=key_type))
    return statement.bindparams(*binds).columns(created_at=UTCDateTime())


# --- the operation -------------------------------------------------------------------------


def search(
    dialect: str,
    scope: Scope,
    query: str,
    *,
    agent_id: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    order: SearchOrder = "rank",
    language: str = "simple",
) -> Operation[SearchPage]:
    """Messages of live sessions matching `query`, best (or newest) first, one page."""
    check_text(query, "query", MAX_QUERY_LENGTH)
    if not query.strip():
        raise InvalidInputError("query", "must contain at least one word")
    check_limit(limit, maximum=MAX_SEARCH_PAGE)
    if agent_id is not None:
        check_text(agent_id, "agent_id", MAX_SESSION_ID_LENGTH)
    if order not in ("rank", "newest"):
        raise InvalidInputError("order", "must be 'rank' (best first) or 'newest'")
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidInputError("cursor", "must be a string returned by search")
    after = decode_cursor(cursor, order) if cursor else None
    params: dict[str, Any] = {"page_limit": limit + 1, **scope.params}
    if dialect == "sqlite":
        match = fts5_query(query)
        if match is None:
            return Operation(lambda tx: _empty_page())
        params["q"] = match
        statement: Any = _sqlite_statement(order, agent_id is not None, after is not None)
    else:
        params["q"] = query
        statement = _postgresql_statement(language, order, agent_id is not None, after is not None)
    if agent_id is not None:
        params["agent_id"] = agent_id
    if after is not None:
        params["after_key"], params["after_sid"], params["after_seq"] = after

    def steps(tx: Transaction) -> Steps[SearchPage]:
        params["now"] = utcnow()
        rows = (yield statement, params).all()
        hits = [
            SearchHit(
                session_id=row.session_id,
                seq=int(row.seq),
                role=Role(row.role),
                agent_id=row.agent_id,
                created_at=row.created_at,
                snippet=row.snippet,
                rank=float(row.match_rank),
            )
            for row in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = hits[-1]
            key = last.rank if order == "rank" else last.created_at
            next_cursor = encode_cursor(order, key, last.session_id, last.seq)
        return SearchPage(hits=hits, next_cursor=next_cursor)

    return Operation(steps, autocommit=dialect == "postgresql")


def _empty_page() -> Steps[SearchPage]:
    return SearchPage(hits=[], next_cursor=None)
    yield  # pragma: no cover - makes this a generator with no statement
