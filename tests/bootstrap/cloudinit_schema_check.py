"""Strict cloud-init schema check, run by Debian's system python (/usr/bin/python3), where the
cloudinit module lives. Reads {name: cloud-config text} JSON on stdin and prints
{name: null | error text} JSON.

cloud-init 22.4's schema is an ``allOf`` of per-module schemas with no top-level ``properties``,
so ``additionalProperties: false`` alone would reject every key. We first list every key some
module declares as a top-level property, then forbid everything else: a misspelled top-level
key (which cloud-init would silently ignore) becomes an error.
"""
import json
import sys

import yaml
from cloudinit.config.schema import SchemaValidationError, get_schema, validate_cloudconfig_schema


def strict_schema():
    schema = get_schema()
    known = {}
    for ref in schema["allOf"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        for key in schema["$defs"][name].get("properties", {}):
            known[key] = {}
    schema["properties"] = known
    schema["additionalProperties"] = False
    return schema


def main():
    docs = json.load(sys.stdin)
    schema = strict_schema()
    out = {}
    for name, text in docs.items():
        if not text.startswith("#cloud-config\n"):
            out[name] = "does not start with #cloud-config"
            continue
        try:
            validate_cloudconfig_schema(yaml.safe_load(text), schema, strict=True, log_details=False)
            out[name] = None
        except SchemaValidationError as exc:
            out[name] = str(exc)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
