#!/usr/bin/python3
"""Validate lwsws configuration files against the shipped JSON Schema.

Usage: tests/validate_configs.py SCHEMA PATH...

Each PATH is a configuration file (JSON with comments and trailing commas, as
lwsws reads it) or a directory whose files are all validated, recursively.
Comments ('#', '//', '/* */') and trailing commas are stripped first. Prints
one line per invalid file (path, JSON pointer of the offending value, reason)
and exits 1 if any; prints the number of files checked and exits 0 otherwise.
Exits 2 when a path holds no file at all. Needs python3-jsonschema.
"""

import json
import os
import sys

import jsonschema


def strip_jsonc(text):
    """The JSON in lwsws's JSONC: comments and trailing commas removed."""
    out = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif c == "#" or text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    # Trailing commas: a comma followed (after blanks) by } or ].
    stripped = "".join(out)
    result = []
    in_string = False
    j = 0
    while j < len(stripped):
        c = stripped[j]
        if in_string:
            result.append(c)
            if c == "\\" and j + 1 < len(stripped):
                result.append(stripped[j + 1])
                j += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            result.append(c)
        elif c == ",":
            k = j + 1
            while k < len(stripped) and stripped[k] in " \t\r\n":
                k += 1
            if k < len(stripped) and stripped[k] in "}]":
                j += 1
                continue
            result.append(c)
        else:
            result.append(c)
        j += 1
    return "".join(result)


def files(path):
    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            for name in sorted(names):
                yield os.path.join(root, name)
    else:
        yield path


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    checked, bad = 0, 0
    for path in argv[2:]:
        found = False
        for name in files(path):
            found = True
            checked += 1
            try:
                with open(name, encoding="utf-8") as f:
                    doc = json.loads(strip_jsonc(f.read()))
            except (OSError, ValueError) as e:
                print(f"{name}: not JSON after stripping comments: {e}")
                bad += 1
                continue
            for err in validator.iter_errors(doc):
                pointer = "/" + "/".join(str(p) for p in err.absolute_path)
                print(f"{name}: {pointer}: {err.message}")
                bad += 1
        if not found:
            print(f"{path}: no configuration file", file=sys.stderr)
            return 2
    if bad:
        print(f"{bad} problem(s) in {checked} file(s)")
        return 1
    print(f"{checked} configuration file(s) valid against {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
