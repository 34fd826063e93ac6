"""Writes vocabulary.js, the dashboard's copy of Gimel's words, from the Python that owns them.

The dashboard compares the API's strings (modes, analyses, roles, verdict and decision kinds)
and counts in UTC days; it has no build step (the wheel and the Lambda zip carry its files as
they are), so the generated module is committed, and tests/test_dashboard.py fails when it
differs from what this writes. Run ``make vocabulary`` (``python -m
gimel_core.dashboard.vocabulary``) after changing ``gimel_core/vocabulary.py`` or the day.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

from gimel_core.storage.schema import DAY
from gimel_core.vocabulary import VOCABULARY

TARGET = Path(__file__).with_name("vocabulary.js")
WIDTH = 100


def _comment(text: str) -> list[str]:
    """A docstring as // lines within the dashboard's line length."""
    width = WIDTH - 3
    lines: list[str] = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines += textwrap.wrap(" ".join(paragraph.split()), width) or [""]
    return [f"// {line}" for line in lines]


def javascript() -> str:
    """The whole module, as committed."""
    out = [
        "// Generated from gimel_core/vocabulary.py by `make vocabulary`: do not edit by hand.",
        "// Each concept maps its Python member names to the strings the API sends, frozen.",
        "",
    ]
    for name, enum in VOCABULARY.items():
        out += _comment(enum.__doc__ or name)
        out.append(f"export const {name} = Object.freeze({{")
        for member in enum:
            out.append(f"  {member.name}: {json.dumps(member.value)},")
        out += ["});", ""]
    out += _comment("Seconds in a UTC day: the history's interval, as the server counts it.")
    out.append(f"export const DAY = {DAY};")
    return "\n".join(out) + "\n"


def main() -> None:
    TARGET.write_text(javascript(), encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
