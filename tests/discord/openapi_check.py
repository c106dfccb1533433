"""Checks Guildhall's REST responses against Discord's own OpenAPI description.

    openapi_check.py SPEC RESPONSES DIFFERENCES

SPEC is Discord's openapi.json (tests/discord/discord-api-spec/). RESPONSES is a JSON list
of {"method", "path" (Discord's path template, e.g. /channels/{channel_id}/messages),
"status", "body"} that the Rust test collected from a running host. Each body is validated
against the schema Discord gives for that operation and status (JSON Schema 2020-12, the
dialect of OpenAPI 3.1). DIFFERENCES lists the known ones, one per line as
`METHOD PATH: JSON-POINTER: reason` (README.md points here): a difference not listed fails
the check, and so does a listed one that no longer happens, so the list stays true.
Prints every checked route and `PASS` at the end.
"""

import json
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:discord-openapi"


def pointer(path):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def resolve(spec, node):
    """Follows a local `$ref` (responses may be references to components)."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def main(spec_path, responses_path, differences_path):
    spec = json.load(open(spec_path))
    registry = Registry().with_resource(SPEC_URI, Resource(contents=spec, specification=DRAFT202012))
    known = {}
    for line in open(differences_path):
        line = line.strip()
        if line and not line.startswith("#"):
            route, where, reason = (part.strip() for part in line.split(":", 2))
            known[(route, where)] = reason
    seen, unexpected = set(), []
    for r in json.load(open(responses_path)):
        route = f"{r['method']} {r['path']}"
        operation = spec["paths"][r["path"]][r["method"].lower()]
        status = str(r["status"])
        if status not in operation["responses"] and 400 <= r["status"] < 500:
            status = "4XX"
        response = resolve(spec, operation["responses"][status])
        content = response.get("content", {}).get("application/json")
        if content is None:
            assert r["body"] is None, f"{route}: Discord answers {r['status']} without a body"
            print(f"ok   {route} {r['status']} (no body)")
            continue
        schema_pointer = pointer(["paths", r["path"], r["method"].lower(), "responses", status])
        if "$ref" in operation["responses"][status]:
            schema_pointer = operation["responses"][status]["$ref"][1:]
        schema = {"$ref": f"{SPEC_URI}#{schema_pointer}/content/application~1json/schema"}
        validator = Draft202012Validator(schema, registry=registry)
        errors = sorted(validator.iter_errors(r["body"]), key=lambda e: list(e.absolute_path))
        problems = 0
        for error in errors:
            where = pointer(error.absolute_path) if error.absolute_path else "/"
            key = (route, where)
            if key in known:
                seen.add(key)
                continue
            problems += 1
            unexpected.append(f"{route}: {where}: {error.message[:300]}")
        print(f"{'ok  ' if problems == 0 else 'FAIL'} {route} {r['status']}")
    stale = [f"{route}: {where}" for (route, where) in known if (route, where) not in seen]
    for line in unexpected:
        print(f"unlisted difference: {line}")
    for line in stale:
        print(f"listed difference that no longer happens: {line}")
    if unexpected or stale:
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main(*sys.argv[1:4])
