"""store.search: full-text search over messages, on both dialects and both facades."""

from __future__ import annotations

import time
from typing import Any

import pytest

from raw_sql import execute
from sqlsessions import InvalidInputError, Message, Role, Store, migrate
from store_fixtures import StoreOpener


def fill(store: Any) -> None:
    store.append(
        "billing-1",
        Message(role=Role.USER, content="My invoice for March is wrong"),
        Message(role=Role.ASSISTANT, content="Let me check the March invoice and the refund"),
    )
    store.append("billing-2", Message(role=Role.USER, content="Where is my refund?"))
    session = store.get("travel-1")
    session.agent_id = "travel"
    session.add_message(Role.USER, "Book a train to Lyon, not a plane")
    store.save(session)


def found(page: Any) -> list[tuple[str, int]]:
    return [(hit.session_id, hit.seq) for hit in page.hits]


def test_search_finds_messages_with_their_position_role_and_a_highlighted_snippet(
    store: Any,
) -> None:
    fill(store)
    page = store.search("invoice")
    assert sorted(found(page)) == [("billing-1", 1), ("billing-1", 2)]
    hit = next(hit for hit in page.hits if hit.seq == 1)
    assert hit.role == Role.USER
    assert "<mark>invoice</mark>" in hit.snippet
    assert hit.agent_id == ""
    assert page.next_cursor is None


def test_the_best_match_comes_first_and_newest_first_is_an_option(store: Any) -> None:
    store.append("s", Message(role=Role.USER, content="refund please"))
    store.append("s", Message(role=Role.USER, content="a long message " * 30 + "refund"))
    store.append("s", Message(role=Role.USER, content="refund refund refund, refund now"))
    by_rank = store.search("refund")
    ranks = [hit.rank for hit in by_rank.hits]
    assert ranks == sorted(ranks, reverse=True)
    assert by_rank.hits[0].seq == 3
    newest = store.search("refund", order="newest")
    assert [hit.seq for hit in newest.hits] == [3, 2, 1]


@pytest.mark.parametrize("order", ["rank", "newest"])
def test_pages_follow_each_other_without_gaps_or_repeats(store: Any, order: str) -> None:
    for i in range(7):
        store.append(f"s{i % 3}", Message(role=Role.USER, content=f"weather report {i}"))
    everything = found(store.search("weather", limit=50, order=order))
    pages: list[tuple[str, int]] = []
    cursor = None
    while True:
        page = store.search("weather", limit=3, cursor=cursor, order=order)
        pages += found(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == everything
    assert len(set(pages)) == 7


def test_the_query_language_has_phrases_alternatives_and_exclusions(store: Any) -> None:
    fill(store)
    assert found(store.search('"march invoice"')) == [("billing-1", 2)]
    assert sorted(found(store.search("lyon OR refund"))) == [
        ("billing-1", 2),
        ("billing-2", 1),
        ("travel-1", 1),
    ]
    assert found(store.search("refund -invoice")) == [("billing-2", 1)]
    assert found(store.search("invoice refund")) == [("billing-1", 2)]


@pytest.mark.parametrize(
    "query", ['"unclosed', "NEAR(a b)", "a*", "col:value", "AND", "-", "(((", "'; DROP TABLE x"]
)
def test_query_text_with_operator_characters_never_fails(store: Any, query: str) -> None:
    fill(store)
    page = store.search(query)
    assert isinstance(page.hits, list)


def test_search_can_be_narrowed_to_one_agent(store: Any) -> None:
    fill(store)
    store.append("other", Message(role=Role.USER, content="a train to Paris"))
    assert found(store.search("train", agent_id="travel")) == [("travel-1", 1)]
    assert len(store.search("train").hits) == 2


def test_an_expired_session_never_matches(open_store: StoreOpener) -> None:
    short = open_store(ttl=0.001)
    short.append("gone", Message(role=Role.USER, content="ephemeral secret"))
    time.sleep(0.01)
    assert short.search("ephemeral").hits == []


def test_edited_and_deleted_messages_are_found_as_they_are_now(store: Any) -> None:
    fill(store)
    session = store.get("billing-2")
    session.messages[0] = session.messages[0].replace(content="Where is my parcel?")
    store.save(session)
    store.delete("travel-1")
    assert found(store.search("refund")) == [("billing-1", 2)]
    assert [hit.session_id for hit in store.search("parcel").hits] == ["billing-2"]
    assert store.search("lyon").hits == []


def test_a_replaced_history_is_searched_as_replaced(store: Any) -> None:
    fill(store)
    store.replace_history("billing-1", [Message(role=Role.SYSTEM, content="summary: billing")])
    assert found(store.search("invoice")) == []
    assert found(store.search("summary")) == [("billing-1", 3)]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": 3}, "query"),
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "limit": 10_000}, "limit"),
        ({"query": "x", "cursor": "not-a-cursor"}, "cursor"),
        ({"query": "x", "order": "oldest"}, "order"),
        ({"query": "x", "agent_id": 5}, "agent_id"),
    ],
)
def test_bad_search_input_is_refused_by_name(
    store: Any, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        store.search(**arguments)
    assert caught.value.field == field


def test_upgrading_a_database_indexes_the_messages_already_there(db_url: str) -> None:
    migrate(db_url, "0005")
    execute(
        db_url,
        "INSERT INTO sessions (id, agent_id, created_at, updated_at, version, rewrite_version,"
        " last_seq, message_count) VALUES ('old', '', :now, :now, 1, 1, 1, 1)",
        now="2026-01-01 00:00:00",
    )
    execute(
        db_url,
        "INSERT INTO messages (session_id, seq, role, content, created_at)"
        " VALUES ('old', 1, 'user', 'written before search existed', :now)",
        now="2026-01-01 00:00:00",
    )
    migrate(db_url)
    with Store.from_url(db_url, ttl=None) as store:
        assert found(store.search("existed")) == [("old", 1)]
