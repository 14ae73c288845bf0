"""Server text reaches the operator's terminal without escape sequences or control characters."""

import httpx
import pytest

from cli.client import Gateway
from cli.main import main
from cli.terminal import REPLACEMENT, clean

HOSTILE = (
    "\x1b[2J\x1b[31mred\x1b[0m"  # clear screen, colour
    "\x1b]52;c;c2VjcmV0\x07"  # OSC 52: write the clipboard
    "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\"  # a hidden hyperlink
    "\x9b6n"  # C1 CSI: ask the terminal to answer (device status report)
    "\x9d0;title\x9c"  # C1 OSC: set the window title
    "bell\x07nul\x00del\x7fnel\x85"  # C0, DEL and a C1 control on their own
    "\u202eevil\u202c"  # right-to-left override
    "\rover\nline\ttab"
)


def test_clean_removes_escape_sequences_and_replaces_every_other_control_character() -> None:
    text = clean(HOSTILE)

    assert text == (
        f"redlinkbell{REPLACEMENT}nul{REPLACEMENT}del{REPLACEMENT}nel{REPLACEMENT}"
        f"{REPLACEMENT}evil{REPLACEMENT} over line tab"
    )
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


@pytest.mark.parametrize("value", ["Acme GmbH", "Müller & Söhne", "日本", 42, None])
def test_clean_keeps_ordinary_text_as_it_is(value: object) -> None:
    assert clean(value) == str(value)


def _gateway(handler) -> Gateway:
    return Gateway("http://gw", transport=httpx.MockTransport(handler))


def test_alert_tables_and_gateway_errors_print_no_escape_sequences(capsys) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/alerts":
            alert = {"id": "a-1", "customer_id": "c-1", "reason": HOSTILE, "status": "open", "owner": "\x1b[8mx"}
            return httpx.Response(200, json={"items": [alert], "total": 1})
        return httpx.Response(403, json={"title": "Forbidden\x1b]52;c;eA==\x07", "detail": "no\x1b[2J"})

    assert main(["alerts"], gateway=_gateway(handler)) == 0
    assert main(["timeline", "c-1"], gateway=_gateway(handler)) == 2

    out = capsys.readouterr()
    for printed in (out.out, out.err):
        assert "\x1b" not in printed and "\x07" not in printed and "\x9b" not in printed
    assert "error: HTTP 403: Forbidden - no" in out.err
