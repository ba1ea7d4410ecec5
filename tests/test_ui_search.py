"""The viewer's search page over HTTP, on SQLite and PostgreSQL: hits, highlights, paging."""

from __future__ import annotations

import re
from html import unescape

import pytest

from sqlsessions import Role, Store, StoreConfig
from test_ui import fetch
from ui_browser import serving

pytest.importorskip("starlette", reason="the ui extra is not installed")

from sqlsessions.ui import create_app
from sqlsessions.ui.snippets import Piece, snippet_pieces

HOSTILE = (
    '<script>window.__xss=1</script> parcel <img src=x onerror="alert(1)"> '
    "<mark>forged</mark> & more"
)


def seeded(url: str) -> str:
    with Store(StoreConfig(url=url, cache_size=0)) as store:
        store.append("s-1", {"role": "user", "content": "where is my parcel"})
        store.append("s-1", {"role": "assistant", "content": "the parcel left Lisbon today"})
        hostile = store.get("s-2")
        hostile.agent_id = "shop"
        hostile.add_message(Role.USER, HOSTILE)
        store.save(hostile)
        store.append("s-3", {"role": "user", "content": "nothing to see"})
    return url


def hit_rows(html: str) -> list[tuple[str, str, str]]:
    """(link, role, snippet html) of each hit, in order."""
    rows = re.findall(
        r'<a class="hit-link" href="([^"]+)">.*?<td class="role">([^<]*)</td>'
        r'.*?<td class="snippet">(.*?)</td>',
        html,
        re.S,
    )
    return [(unescape(href), role, snippet) for href, role, snippet in rows]


def test_search_shows_highlighted_hits_that_open_the_conversation_at_the_hit(
    migrated_url: str,
) -> None:
    with serving(create_app(seeded(migrated_url))) as base:
        status, html, _ = fetch(base + "/search?q=lisbon")
        assert status == 200
        [(href, role, snippet)] = hit_rows(html)
        assert href == "/sessions/s-1?after=1#m2" and role == "assistant"
        assert re.findall(r"<mark>(.*?)</mark>", snippet) == ["Lisbon"]
        status, conversation, _ = fetch(base + href.partition("#")[0])
        assert status == 200
        assert re.findall(r'<li class="message[^"]*" id="m(\d+)"', conversation)[0] == "2"
        assert "the parcel left Lisbon today" in conversation


def test_stored_markup_in_a_matching_message_is_shown_as_text_never_as_markup(
    migrated_url: str,
) -> None:
    with serving(create_app(seeded(migrated_url))) as base:
        # PostgreSQL does not index HTML tags: "script" matches on SQLite only.
        for word in ("parcel", "forged", "script"):
            status, html, _ = fetch(f"{base}/search?q={word}&agent=shop")
            assert status == 200
            assert "<script" not in html and "<img" not in html
            for _, _, snippet in hit_rows(html):
                # The only element in a snippet is the store's highlight of the matched word.
                assert re.sub(r"</?mark>", "", snippet).count("<") == 0
                assert {m.lower() for m in re.findall(r"<mark>(.*?)</mark>", snippet)} == {word}
            if word != "script":
                assert len(hit_rows(html)) == 1


def test_search_pages_with_the_stores_cursor_and_keeps_the_filters(migrated_url: str) -> None:
    with serving(create_app(seeded(migrated_url))) as base:
        status, first, _ = fetch(base + "/search?q=parcel&order=newest&limit=2")
        assert status == 200
        found = [href for href, _, _ in hit_rows(first)]
        assert len(found) == 2
        more = re.search(r'<a id="next-page" href="([^"]+)"', first)
        assert more
        next_link = unescape(more.group(1))
        assert "order=newest" in next_link and "cursor=" in next_link
        _, second, _ = fetch(base + "/search" + next_link)
        found += [href for href, _, _ in hit_rows(second)]
        assert 'id="next-page"' not in second and 'id="first-page"' in second
    assert found == [
        "/sessions/s-2?after=0#m1",
        "/sessions/s-1?after=1#m2",
        "/sessions/s-1?after=0#m1",
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("q=parcel&cursor=not-a-cursor", "cursor"),
        ("q=parcel&order=sideways", "order"),
        ("q=parcel&limit=0", "limit"),
        ("q=" + "x" * 1001, "query"),
    ],
)
def test_bad_search_input_is_a_message_on_the_page_naming_the_field(
    sqlite_url: str, query: str, field: str
) -> None:
    with serving(create_app(seeded(sqlite_url))) as base:
        status, html, _ = fetch(f"{base}/search?{query}")
    assert status == 400
    problem = re.search(r'<p class="error-text" id="search-problem">(.*?)</p>', html, re.S)
    assert problem and field in problem.group(1)
    assert '<form class="filters" id="search-form"' in html


@pytest.mark.parametrize("query", ['"unclosed', "AND OR NOT (", "-parcel", "*", "a:b ^c"])
def test_query_syntax_the_engine_would_choke_on_never_fails_the_page(
    migrated_url: str, query: str
) -> None:
    from urllib.parse import quote

    with serving(create_app(seeded(migrated_url))) as base:
        status, _, _ = fetch(f"{base}/search?q={quote(query)}")
    assert status == 200


def test_an_empty_query_shows_the_form_and_how_to_search(sqlite_url: str) -> None:
    with serving(create_app(seeded(sqlite_url))) as base:
        status, html, _ = fetch(base + "/search")
    assert status == 200 and 'id="q"' in html and "phrase" in html and "hit-link" not in html


def test_the_stores_markers_are_told_apart_from_the_same_text_in_the_message() -> None:
    assert snippet_pieces("a <mark>b</mark> c", "a b c") == [
        Piece("a "),
        Piece("b", highlighted=True),
        Piece(" c"),
    ]
    message = "x <mark>fake</mark> y"
    assert snippet_pieces("…x <mark><mark>fake</mark></mark> y", "ab " + message) == [
        Piece("…x <mark>"),
        Piece("fake", highlighted=True),
        Piece("</mark> y"),
    ]
    # Undecidable (or the message unknown): verbatim, nothing highlighted.
    assert snippet_pieces("<mark>a</mark>", None) == [Piece("<mark>a</mark>")]
    assert snippet_pieces("<mark>a</mark> z", "<mark>b</mark>") == [Piece("<mark>a</mark> z")]
