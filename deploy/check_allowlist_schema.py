"""Validate every allowlist the project ships against docs/allowlist.schema.json.

The schema is generated from the Rust model (`egress-guard schema`; a Rust test keeps
the committed file current). Here it is used the way editors and CI pipelines use it:
the allowlists inside the rendered ConfigMaps and examples/allowlist.yaml must pass,
and documents the server refuses for a structural reason must fail.

    check_allowlist_schema.py --repo DIR RENDERED.yaml...
"""

import argparse
import json
import sys

import jsonschema
import yaml

# Documents the server refuses whose fault is visible to a schema.
REFUSED = [
    {"mode": "block"},
    {"namespaces": {"*": {}}},
    {"namespaces": {"team**": {}}},
    {"help": "two\nlines"},
    {"bogus": 1},
    {"hosts": "api.github.com"},
    {"hosts": [{"host": "a.example", "port": [443]}]},
    {"hosts": [{"host": "a.example", "ports": []}]},
    {"hosts": [{"host": "a.example", "ports": [70000]}]},
    {"hosts": [{"host": "a.example", "expires": "soon"}]},
    {"hosts": [{"host": "a.example", "expires": 20261210}]},
    {"cidrs": [{"cidr": "10.0.0.0/8", "owner": 7}]},
    {"namespaces": {"payments": {"allowAny": True}}},
    {"defaultTimeout": "soon"},
    {"namespaces": {"Bad_NS": {}}},
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("rendered", nargs="*")
    args = parser.parse_args()
    with open(f"{args.repo}/docs/allowlist.schema.json") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    documents = []
    with open(f"{args.repo}/examples/allowlist.yaml") as f:
        documents.append(("examples/allowlist.yaml", yaml.safe_load(f)))
    for path in args.rendered:
        with open(path) as f:
            for obj in yaml.safe_load_all(f):
                if obj and obj.get("kind") == "ConfigMap" and "allowlist.yaml" in (obj.get("data") or {}):
                    name = f"{path}: ConfigMap {obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
                    documents.append((name, yaml.safe_load(obj["data"]["allowlist.yaml"])))
    # The README's allowlist, as a reader copies it.
    with open(f"{args.repo}/README.md") as f:
        readme = f.read()
    start = readme.index("```yaml\nmode: enforce") + len("```yaml\n")
    documents.append(("README.md's allowlist", yaml.safe_load(readme[start:readme.index("```", start)])))
    # The README's unquoted date: PyYAML loads it as a datetime.date.
    documents.append(("an unquoted expires date", yaml.safe_load("hosts: [{host: a.example, expires: 2026-12-10}]")))
    failures = 0
    for name, doc in documents:
        errors = sorted(validator.iter_errors(doc), key=str)
        if errors:
            failures += 1
            print(f"FAIL {name}: {errors[0].message}", file=sys.stderr)
    for doc in REFUSED:
        if validator.is_valid(doc):
            failures += 1
            print(f"FAIL the schema accepts a refused allowlist: {doc}", file=sys.stderr)
    if failures:
        return 1
    print(f"allowlist schema: {len(documents)} shipped allowlists valid, {len(REFUSED)} refused ones rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
