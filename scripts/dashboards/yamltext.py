"""YAML text for generated files: keys in the order given, long prose folded (``>-``) so a reviewer can
read it, a header comment naming the generator."""

from __future__ import annotations

from typing import Any

import yaml

WIDTH = 108


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)  # indent list items under their key


def _string(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    prose = " " in data and len(data) > 72 and "\n" not in data and data == data.strip()
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=">" if prose else None)


_Dumper.add_representer(str, _string)


def dump(data: Any, header: str) -> str:
    """``data`` as YAML under ``header`` (each line becomes a ``#`` comment); loads back equal."""
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines())
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=WIDTH, allow_unicode=True)
    if yaml.safe_load(body) != data:  # the folding must never change a value
        raise AssertionError("YAML rendering does not round-trip")
    return comment + body
