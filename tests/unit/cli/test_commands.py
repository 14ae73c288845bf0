import json
from pathlib import Path

import httpx
import pytest

from cli.client import Gateway
from cli.main import main


class FakeGateway:
    """The gateway's bulk endpoints: rows without customer_id/name are rejected, the rest created."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.customers: dict[str, str] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/bulk"):
            items = json.loads(request.content)["rows"]
            rows = []
            for index, item in enumerate(items):
                key = "name" if "customers" in path else "customer_id"
                if key not in item:
                    rows.append(
                        {"index": index, "status": "rejected", "errors": [{"field": key, "message": "Field required"}]}
                    )
                else:
                    rows.append({"index": index, "status": "created", "id": self._id(item)})
            created = sum(r["status"] == "created" for r in rows)
            return httpx.Response(
                200, json={"created": created, "existing": 0, "rejected": len(rows) - created, "rows": rows}
            )
        if path == "/api/v1/customers/c-1/interactions":
            item = {"occurred_at": "2026-01-01T00:00:00Z", "type": "purchase", "amount": "10.00", "currency": "EUR"}
            return httpx.Response(200, json={"items": [item], "total": 1, "limit": 50, "offset": 0})
        if path == "/api/v1/alerts":
            alert = {
                "id": "a-1",
                "customer_id": "c-1",
                "reason": "severe_complaint",
                "severity": "high",
                "status": "open",
            }
            return httpx.Response(200, json={"items": [alert], "total": 1, "limit": 50, "offset": 0})
        return httpx.Response(404, json={"title": "Not found"})

    def _id(self, item: dict) -> str:
        key = item.get("external_ref") or item.get("external_id") or str(len(self.customers))
        return self.customers.setdefault(key, f"id-{key}")


@pytest.fixture
def fake() -> FakeGateway:
    return FakeGateway()


def run(fake: FakeGateway, *argv: str) -> int:
    gateway = Gateway("http://gw", token="secret", transport=httpx.MockTransport(fake))
    return main(list(argv), gateway=gateway)


def test_an_interaction_import_reports_rejected_rows_by_line_and_exits_1(fake, tmp_path: Path, capsys):
    csv = tmp_path / "history.csv"
    csv.write_text("customer_id,type\nc-1,call\n,email\nc-2,visit\n")
    assert run(fake, "import", "interactions", str(csv), "--chunk-size", "2") == 1
    out = capsys.readouterr()
    assert "interactions: 2 created, 0 already there, 1 rejected" in out.out
    assert "line 3: customer_id or customer_ref: Field required" in out.out  # checked before sending
    assert "100%" in out.err  # the progress on stderr
    assert [len(json.loads(r.content)["rows"]) for r in fake.requests] == [2]
    assert fake.requests[0].headers["authorization"] == "Bearer secret"


def test_a_clean_customer_import_exits_0(fake, tmp_path: Path, capsys):
    csv = tmp_path / "customers.csv"
    csv.write_text("name,external_ref,tags\nAcme,ERP-1,a|b\n")
    assert run(fake, "import", "customers", str(csv)) == 0
    assert json.loads(fake.requests[0].content) == {
        "rows": [{"name": "Acme", "external_ref": "ERP-1", "tags": ["a", "b"]}]
    }


def test_cdnow_creates_customers_then_their_purchases_with_the_customer_ids(fake, tmp_path: Path, capsys):
    data = tmp_path / "CDNOW_sample.txt"
    data.write_text(
        " 00004 0001 19970101  2   29.33\n 00004 0001 19970118  2   29.73\n 00021 0002 19970101  3   63.34\n"
    )
    assert run(fake, "import", "cdnow", str(data)) == 0
    purchases = json.loads(fake.requests[-1].content)["rows"]
    assert [(p["customer_id"], p["external_id"], p["currency"]) for p in purchases] == [
        ("id-cdnow-4", "cdnow-1", "USD"),
        ("id-cdnow-4", "cdnow-2", "USD"),
        ("id-cdnow-21", "cdnow-3", "USD"),
    ]
    assert "purchases: 3 created" in capsys.readouterr().out


def test_timeline_and_alerts_print_tables(fake, capsys):
    assert run(fake, "timeline", "c-1") == 0
    assert "purchase" in capsys.readouterr().out
    assert run(fake, "alerts", "--status", "open") == 0
    assert "severe_complaint" in capsys.readouterr().out
    assert fake.requests[-1].url.params["status"] == "open"


def test_an_unreachable_gateway_or_missing_file_exits_2(tmp_path: Path, capsys):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    gateway = Gateway("http://gw", transport=httpx.MockTransport(refuse), retry_backoff_s=0)
    assert main(["timeline", "c-1"], gateway=gateway) == 2
    assert "cannot reach the gateway" in capsys.readouterr().err
    assert main(["import", "customers", str(tmp_path / "nope.csv")], gateway=gateway) == 2


def test_a_chunk_that_timed_out_is_sent_again_only_when_its_rows_are_idempotent(tmp_path: Path, capsys):
    calls: list[dict] = []

    def slow_then_fine(request: httpx.Request) -> httpx.Response:
        rows = json.loads(request.content)["rows"]
        calls.append(rows)
        if len(calls) == 1:
            return httpx.Response(504, json={"title": "Gateway timeout"})
        report = [{"index": i, "status": "existing", "id": f"id-{i}"} for i in range(len(rows))]
        return httpx.Response(200, json={"created": 0, "existing": len(rows), "rejected": 0, "rows": report})

    csv = tmp_path / "i.csv"
    csv.write_text("customer_id,type,external_id\nc-1,call,x-1\n")
    gateway = Gateway("http://gw", transport=httpx.MockTransport(slow_then_fine), retry_backoff_s=0)
    assert main(["import", "interactions", str(csv)], gateway=gateway) == 0
    assert len(calls) == 2

    calls.clear()
    csv = tmp_path / "c.csv"
    csv.write_text("name\nAcme\n")  # no external_ref: a resend could store it twice
    assert main(["import", "customers", str(csv)], gateway=gateway) == 2
    assert len(calls) == 1
    assert "504" in capsys.readouterr().err
