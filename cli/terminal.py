"""Server-provided text made safe to print: no terminal escape sequences, no control characters.

A customer's name, an interaction's text or a problem's detail comes from whoever wrote it; printed raw,
``ESC]52;...`` writes the operator's clipboard, ``ESC[2J`` clears the screen, ``ESC]8;;url`` hides a link
and a carriage return or bidi override makes a line show something other than what it holds. Every
piece of server text the CLI prints goes through ``clean`` first.
"""

from __future__ import annotations

import re

# Whole escape sequences first (so their parameters do not survive as visible junk): CSI (ESC[ or the
# C1 CSI), OSC/DCS/SOS/PM/APC strings up to their terminator, then any other two-byte ESC sequence.
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 controls, DEL, C1 controls, and the Unicode bidirectional overrides and isolates.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
REPLACEMENT = "\ufffd"


def clean(value: object) -> str:
    """``value`` as text with escape sequences removed and other control characters shown as U+FFFD
    (a tab or line break as a space, so a table row stays one row)."""
    text = _SEQUENCES.sub("", str(value))
    return _CONTROLS.sub(lambda m: " " if m.group() in "\t\n\r" else REPLACEMENT, text)
