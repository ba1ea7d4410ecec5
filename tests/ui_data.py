"""Sessions the viewer tests browse: the demo, hostile content, and a few agents."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from sqlsessions import Role, Store, ToolCall, ToolFunction
from sqlsessions.cli.demo import record_demo
from sqlsessions.schema import messages

XSS_SESSION = "xss-<script>window.__xss_id=1</script>"
XSS_CONTENT = '<script>window.__xss=1;alert("xss")</script>'
XSS_IMG = '<img src=x onerror="window.__xss=2;alert(2)">'
XSS_ARGUMENTS = '{"html": "<img src=x onerror=alert(3)>", "q": "</pre><script>alert(4)</script>"}'
XSS_META_KEY = "<b onmouseover=alert(5)>key</b>"
XSS_META_VALUE = "<script>alert(6)</script>"
XSS_AGENT = "agent-<svg onload=alert(7)>"


def seed_demo(store: Store) -> None:
    record_demo(store)


def seed_xss(store: Store) -> None:
    session = store.get(XSS_SESSION)
    session.agent_id = XSS_AGENT
    session.set_metadata(XSS_META_KEY, XSS_META_VALUE)
    session.set_metadata("nested", {"html": XSS_IMG})
    session.add_message(Role.USER, XSS_CONTENT)
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        XSS_IMG,
        [ToolCall(id="c<1>", function=ToolFunction(name="fn<i>x</i>", arguments=XSS_ARGUMENTS))],
    )
    session.add_tool_result("c<1>", '{"error": "<script>alert(8)</script>"}')
    store.save(session)


def seed_agents(store: Store, per_agent: int = 3) -> list[str]:
    """Sessions of three agents, their messages spread over the past week (for the charts)."""
    ids: list[str] = []
    for a, agent in enumerate(("support-bot", "research-agent", "travel-assistant")):
        for i in range(per_agent):
            sid = f"{agent}-{i:02d}"
            session = store.get(sid)
            session.agent_id = agent
            session.set_metadata("team", "blue" if i % 2 else "red")
            for turn in range(2 + (a + i) % 4):
                session.add_message(Role.USER, f"question {turn} for {agent}")
                session.add_message_with_tool_calls(
                    Role.ASSISTANT,
                    "",
                    [
                        ToolCall(
                            id=f"call_{turn}",
                            function=ToolFunction(
                                name=("search", "lookup_order", "get_weather")[(turn + a) % 3],
                                arguments=f'{{"q": {turn}}}',
                            ),
                        )
                    ],
                )
                session.add_tool_result(f"call_{turn}", '{"ok": true}')
                session.add_message(Role.ASSISTANT, f"answer {turn}")
            store.save(session)
            ids.append(sid)
    # Backdate the messages so the daily charts show a week (the database dates new rows).
    now = datetime.now(timezone.utc)
    with store.engine.begin() as conn:
        for n, sid in enumerate(ids):
            conn.execute(
                update(messages)
                .where(messages.c.session_id == sid)
                .values(created_at=now - timedelta(days=n % 7))
            )
    return ids
