"""The Skill's tool specs for OpenAI, Anthropic and MCP: valid JSON Schemas that list only
the permitted tools, accepted by the vendors' own types, and calls built from them run."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import mcp.types
import pytest
from openai.types.chat import ChatCompletionFunctionTool
from openai.types.responses import FunctionTool

from skill_harness import SkillHarness, harness, skill_kind  # noqa: F401
from sqlsessions import Skill

ARGUMENT_ERRORS = ("parameter", "arguments")


def schemas(skill: Skill) -> dict[str, dict[str, Any]]:
    return {tool.name: tool.parameters for tool in skill.tools()}


def test_every_tool_schema_is_a_valid_strict_json_schema() -> None:
    for name, schema in schemas(Skill(allow=Skill.ALL_TOOLS)).items():
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        for key, spec in schema["properties"].items():
            assert spec["type"] in ("string", "integer"), (name, key)
            assert spec["description"], (name, key)
            if spec["type"] == "string":
                assert spec["maxLength"] >= 1, (name, key)
            else:
                assert (spec["minimum"], spec["maximum"]) >= (1, spec["default"]), (name, key)
        assert set(schema["required"]) <= set(schema["properties"]), name


def test_ids_keys_and_values_carry_their_length_limits() -> None:
    found = schemas(Skill(allow=Skill.ALL_TOOLS))
    metadata_set = found["sessions_metadata_set"]["properties"]
    assert metadata_set["session_id"]["maxLength"] == 255
    assert metadata_set["session_id"]["minLength"] == 1
    assert metadata_set["key"]["maxLength"] == 255
    assert metadata_set["value"]["maxLength"] == 65_536
    assert found["sessions_history"]["properties"]["limit"]["maximum"] == 500
    assert found["sessions_list"]["properties"]["limit"]["maximum"] == 100


@pytest.mark.parametrize("allow", [None, Skill.READ_TOOLS, Skill.ALL_TOOLS])
def test_the_three_formats_list_exactly_the_permitted_tools(allow: Any) -> None:
    skill = Skill(allow=allow)
    expected = [tool.name for tool in skill.tools()]
    assert set(expected) == skill.allowed
    assert [spec["function"]["name"] for spec in skill.openai_tools()] == expected
    assert [spec["name"] for spec in skill.openai_tools(api="responses")] == expected
    assert [spec["name"] for spec in skill.anthropic_tools()] == expected
    assert [spec["name"] for spec in skill.mcp_tools()] == expected


def test_openai_chat_and_responses_specs_are_accepted_by_the_openai_types() -> None:
    skill = Skill(allow=Skill.ALL_TOOLS)
    for spec, tool in zip(skill.openai_tools(), skill.tools(), strict=True):
        parsed = ChatCompletionFunctionTool.model_validate(spec)
        assert parsed.function.name == tool.name
        assert parsed.function.parameters == tool.parameters
        assert spec == {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
    for spec in skill.openai_tools(api="responses"):
        parsed_tool = FunctionTool.model_validate(spec)
        assert parsed_tool.strict is False  # the Responses API's default strict mode is off
        assert parsed_tool.parameters == schemas(skill)[spec["name"]]


def test_anthropic_specs_are_messages_api_tools() -> None:
    skill = Skill(allow=Skill.ALL_TOOLS)
    for spec, tool in zip(skill.anthropic_tools(), skill.tools(), strict=True):
        assert set(spec) == {"name", "description", "input_schema"}
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", spec["name"])
        assert spec["input_schema"] == tool.parameters
        assert spec["input_schema"]["type"] == "object"
    json.dumps(skill.anthropic_tools())


def test_mcp_specs_are_a_tools_list_result_with_honest_hints() -> None:
    skill = Skill(allow=Skill.ALL_TOOLS)
    listing = mcp.types.ListToolsResult.model_validate({"tools": skill.mcp_tools()})
    by_name = {tool.name: tool for tool in listing.tools}
    assert list(by_name) == [tool.name for tool in skill.tools()]
    for tool in skill.tools():
        parsed = by_name[tool.name]
        assert parsed.input_schema == tool.parameters
        assert parsed.description == tool.description
        assert parsed.annotations is not None
        assert parsed.annotations.read_only_hint is (tool.name in Skill.READ_TOOLS)
        assert parsed.annotations.destructive_hint is (tool.name in Skill.DESTRUCTIVE_TOOLS)


def test_the_specs_are_copies_a_caller_may_change() -> None:
    skill = Skill()
    skill.anthropic_tools()[0]["input_schema"]["properties"].clear()
    skill.tools()[1].parameters["required"].clear()
    assert skill.tools()[1].parameters["required"] == ["session_id"]
    assert skill.anthropic_tools()[0]["input_schema"]["properties"]


def example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """What a model fills in for a tool: every required field, and the optional integers."""
    values = {"session_id": "rt-session", "key": "lang", "value": '"en"'}
    arguments: dict[str, Any] = {}
    for key, spec in schema["properties"].items():
        if spec["type"] == "integer":
            arguments[key] = spec["default"]
        elif key in schema["required"]:
            arguments[key] = values[key]
    return arguments


def test_a_call_built_from_each_format_runs_through_the_skill(
    harness: SkillHarness,  # noqa: F811
) -> None:
    harness.make_session("rt-session", 2)
    skill = harness.skill()
    formats = {
        "openai": [
            (s["function"]["name"], s["function"]["parameters"]) for s in skill.openai_tools()
        ],
        "anthropic": [(s["name"], s["input_schema"]) for s in skill.anthropic_tools()],
        "mcp": [(s["name"], s["inputSchema"]) for s in skill.mcp_tools()],
    }
    for listing in formats.values():
        for name, schema in listing:
            if name == "sessions_delete":
                continue  # run last, below: it would leave nothing for the others
            arguments = example_arguments(schema)
            jsonschema.validate(arguments, schema)
            result = harness.call(skill, name, json.dumps(arguments))  # as a model sends it
            assert "error" not in result, (name, result)
    deleted = harness.call(skill, "sessions_delete", json.dumps({"session_id": "rt-session"}))
    assert deleted == {"session_id": "rt-session", "status": "deleted"}


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("sessions_get", {}),
        ("sessions_get", {"session_id": ""}),
        ("sessions_get", {"session_id": "x" * 256}),
        ("sessions_get", {"session_id": 5}),
        ("sessions_get", {"session_id": "a", "extra": 1}),
        ("sessions_history", {"session_id": "a", "limit": 0}),
        ("sessions_history", {"session_id": "a", "limit": "10"}),
        ("sessions_history", {"session_id": "a", "limit": 1.5}),
        ("sessions_list", {"cursor": ""}),
        ("sessions_list", {"limit": -1}),
        ("sessions_metadata_set", {"session_id": "a", "key": "k"}),
        ("sessions_metadata_set", {"session_id": "a", "key": "k" * 256, "value": "v"}),
        ("sessions_metadata_set", {"session_id": "a", "key": "k", "value": "v" * 65_537}),
        ("sessions_metadata_get", {"session_id": "a", "key": ""}),
    ],
)
def test_arguments_the_schema_rejects_the_skill_rejects_too(
    harness: SkillHarness,  # noqa: F811
    name: str,
    arguments: dict[str, Any],
) -> None:
    skill = harness.skill()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(arguments, schemas(skill)[name])
    result = harness.call(skill, name, arguments)
    assert set(result) == {"error"}, result
    assert any(word in result["error"] for word in ARGUMENT_ERRORS), result
    assert harness.store.list() == []
