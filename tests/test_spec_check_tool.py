"""The HubSpot spec-check tool's own logic (it needs Prism and HubSpot's specs to run for real)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "hubspot_spec_check.py"
spec = importlib.util.spec_from_file_location("hubspot_spec_check", TOOL)
assert spec is not None and spec.loader is not None
tool = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = tool  # dataclasses look their module up there
spec.loader.exec_module(tool)


def test_a_cut_short_violation_list_keeps_its_whole_entries():
    header = ('Too many violations! [{"location":["request","body"],"severity":"Error","code":"required",'
              '"message":"Request body must have required property \\"after\\""},{"location":["response","bo')
    assert tool.parse_violations(header) == [
        {"location": ["request", "body"], "severity": "Error", "code": "required",
         "message": 'Request body must have required property "after"'}]
    assert tool.parse_violations('[{"location":["response"],"message":"m"}]') == [
        {"location": ["response"], "message": "m"}]
    assert tool.parse_violations("garbage")[0]["location"] == []


def test_violations_are_grouped_by_kind_not_by_item_or_record():
    assert tool._general("Response body property results.12.options.3 must have") == \
        "Response body property results.N.options.N must have"
    assert tool._general("/crm/objects/2026-09/contacts/1234") == "/crm/objects/2026-09/contacts/{id}"


def test_prefixes_follow_both_kinds_of_version():
    assert tool.prefix("contacts.json", "2026-09") == "/crm/objects/2026-09/"
    assert tool.prefix("lists.json", "v3") == "/crm/v3/lists/"
    assert tool.prefix("subscriptions.json", "2026-09") == "/communication-preferences/2026-09/"
    # Companies and deals share the objects API's paths: each spec gets its own object type's requests.
    assert tool.prefix("deals.json", "2026-09") == "/crm/objects/2026-09/deals/"
    assert tool.api_prefix("deals.json", "2026-09") == "/crm/objects/2026-09/"
    assert tool.prefix("associations.json", "2026-09") == "/crm/associations/2026-09/"


def test_pruning_keeps_the_paths_asked_for_and_the_schemas_they_reach(tmp_path):
    doc = {"paths": {"/crm/lists/2026-09/{listId}/memberships": {"get": {"responses": {"200": {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}}}}},
        "/crm/lists/2026-09/search": {"post": {"x": {"$ref": "#/components/schemas/Huge"}}}},
        "components": {"schemas": {"Page": {"properties": {"next": {"$ref": "#/components/schemas/Next"}}},
                                   "Next": {"type": "string"}, "Huge": {"type": "object"}},
                       "securitySchemes": {"oauth2": {"type": "oauth2"}}}}
    source = tmp_path / "lists.json"
    source.write_text(json.dumps(doc))
    out = json.loads(tool.pruned(source, tmp_path / "small.json", ("/memberships",)).read_text())
    assert list(out["paths"]) == ["/crm/lists/2026-09/{listId}/memberships"]
    assert sorted(out["components"]["schemas"]) == ["Next", "Page"]
    assert out["components"]["securitySchemes"] == doc["components"]["securitySchemes"]
