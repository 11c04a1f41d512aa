#!/usr/bin/env python3
"""Validates recorded HTTP responses against schemas/openapi.yaml.

usage: scripts/validate-responses.py SPEC RESPONSES.jsonl

Each line of RESPONSES.jsonl is one response:
  {"method": "GET", "path": "/v1/users/{id}/mfa-status", "status": 200,
   "contentType": "application/json", "body": "<the body text>"}
`path` is the spec's path template. A response fails when its operation or status is not
documented, its content type is not one the spec lists for that status, or (JSON) its body
does not validate against the schema. Prints one line per failure; exits 1 if any, 3 when
PyYAML or jsonschema is missing.
"""
import json
import sys

try:
    import yaml
    from jsonschema import Draft202012Validator, FormatChecker
except ImportError as e:  # exit 3: the tests skip (outside CI) rather than fail
    print(f"validate-responses.py needs PyYAML and jsonschema (scripts/install-deps.sh): {e}", file=sys.stderr)
    sys.exit(3)


def resolve(spec, obj):
    """Follows a local $ref of a response object (components/responses/...)."""
    while isinstance(obj, dict) and "$ref" in obj:
        node = spec
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def check(spec, rec):
    where = f'{rec.get("method")} {rec.get("path")} {rec.get("status")}'
    op = spec.get("paths", {}).get(rec.get("path"), {}).get(str(rec.get("method", "")).lower())
    if op is None:
        return f"{where}: no such operation in the spec"
    responses = op.get("responses", {})
    status = str(rec.get("status"))
    response = responses.get(status) or responses.get(status[0] + "XX") or responses.get("default")
    if response is None:
        return f"{where}: status not documented (documented: {', '.join(sorted(responses))})"
    response = resolve(spec, response)
    content = response.get("content")
    if not content:
        return None if not rec.get("body") else f"{where}: the spec documents no body, got {len(rec['body'])} bytes"
    media = (rec.get("contentType") or "").split(";")[0].strip().lower()
    if media not in content:
        return f"{where}: content type '{media}' not documented (documented: {', '.join(content)})"
    schema = content[media].get("schema", {})
    if media == "application/json" or media.endswith("+json"):
        try:
            body = json.loads(rec.get("body") or "")
        except ValueError as e:
            return f"{where}: body is not JSON: {e}"
    else:
        body = rec.get("body") or ""
    # Local refs (#/components/...) resolve against a root that carries the components.
    root = {"components": spec.get("components", {}), "allOf": [schema]}
    errors = sorted(Draft202012Validator(root, format_checker=FormatChecker()).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        return "; ".join(f"{where}: at /{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
    return None


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = yaml.safe_load(f)
    failures = 0
    count = 0
    with open(argv[2]) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            count += 1
            try:
                rec = json.loads(line)
            except ValueError as e:
                print(f"{argv[2]}:{n}: not a JSON record: {e}")
                failures += 1
                continue
            problem = check(spec, rec)
            if problem:
                print(f"{argv[2]}:{n}: {problem}")
                failures += 1
    print(f"{count} responses, {failures} failing", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
