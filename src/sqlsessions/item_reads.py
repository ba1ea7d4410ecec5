"""The end of a conversation as a framework adapter reads it: its own items, verbatim.

A framework adapter stores each item verbatim (``messages.item``) beside the projection the
Go API reads. Reading its rows back as `Message` objects would fetch and decode the
projection (content, tool calls, usage) and build a model per row, only for the adapter to
take the item out again: that was most of the cost of loading a long history. Here one
statement fetches the item of each of the newest rows and nothing else. Only when one of
them was not written in the adapter's format (e.g. through the Go API) are the rows read
again, whole, by one statement, so a mixed session still reads back complete.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Select, Text, bindparam, case, cast, exists, func, select

from sqlsessions import statements as sql
from sqlsessions.models import Message, check_session_id, check_text
from sqlsessions.queries import check_limit
from sqlsessions.schema import messages
from sqlsessions.scope import Scope
from sqlsessions.steps import Operation, Steps, Transaction, utcnow
from sqlsessions.tail import ALL, MAX_LIMIT

M = messages.c


ItemOrMessage = dict[str, Any] | Message | None
"""One entry of `last_items`: the row's item when written in the format asked for (None for
a row of that format without one: the continuation of an item stored across several rows,
as the ADK adapter does), else the row as a `Message`."""

_newest = (
    select(M.seq, M.item_format, M.item)
    .where(
        sql.owned_by(messages),
        exists().where(sql.this_session(), sql.live()),  # evaluated once per statement
    )
    .order_by(M.seq.desc())
    .limit(bindparam("limit"))
    .subquery("newest")
)
select_last_items: Select[Any] = select(
    # The item's JSON text (decoded below in one go, not row by row): 'null' for a row of the
    # format without an item, NULL (SQL) for a row not written in the format. Computed outside
    # the LIMIT, so only for the rows returned, whatever plan the table's statistics lead to
    # (a sort of the whole session first would otherwise render every item as text).
    case(
        (
            _newest.c.item_format == bindparam("item_format"),
            func.coalesce(cast(_newest.c.item, Text()), "null"),
        )
    ).label("item")
).order_by(_newest.c.seq.desc())
"""The item (JSON text) of each of the newest `limit` rows of a live session, newest first."""


def last_items(
    dialect: str, scope: Scope, session_id: str, item_format: str, limit: int | None = None
) -> Operation[list[ItemOrMessage]]:
    """The last `limit` messages (all when None), oldest first, exactly `limit` when there
    are that many: each as its item if it was written in `item_format` (None if that row has
    no item), else as a `Message`. An absent or expired session has none."""
    check_session_id(session_id)
    check_text(item_format, "item_format")
    if limit is not None:
        check_limit(limit, maximum=MAX_LIMIT)

    def steps(tx: Transaction) -> Steps[list[ItemOrMessage]]:
        params = {
            "sid": session_id,
            "now": utcnow(),
            "limit": ALL if limit is None else limit,
            "item_format": item_format,
            **scope.params,
        }
        texts = [row[0] for row in (yield select_last_items, params).all()]
        if None not in texts:  # every row was written in this format: the usual case
            texts.reverse()
            # One parse of the whole window: several times faster than a parse per row.
            items: list[ItemOrMessage] = json.loads("[" + ",".join(texts) + "]")
            return items
        # Some row needs its projection: read the window again, whole (one statement).
        joined = (yield sql.select_tail_with_calls[dialect], params).all()
        _, stored = sql.messages_from_rows(*sql.split_tail_with_calls(joined))
        return [
            message.item if message.item_format == item_format else message for message in stored
        ]

    return Operation(steps, autocommit=dialect == "postgresql", direct=True)
