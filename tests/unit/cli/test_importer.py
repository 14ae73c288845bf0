"""crm import: readers, mapping, validation messages, checkpoint and resume, rejects, retries."""

import csv
import json
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli import sources
from cli.client import Gateway, GatewayError, retry_after_s, retry_wait_s
from cli.importer import Checkpoint, Importer, Settings
from cli.main import main
from cli.mapping import MappingError, build, load_mapping_file, parse_flags
from cli.sources import SourceError, open_source, records


class Platform:
    """The gateway's bulk routes over an in-memory store keyed like the services key rows."""

    def __init__(self, *, status_bulk: bool = True, resolve: bool = True) -> None:
        self.customers: dict[str, str] = {}  # external_ref -> id
        self.interactions: dict[str, dict] = {}  # external_id -> row
        self.statuses: dict[str, str] = {}  # customer id -> status
        self.requests: list[httpx.Request] = []
        self.status_bulk = status_bulk
        self.resolve = resolve  # POST /customers/resolve exists (an older platform has only the listing)
        self.busy: list[httpx.Response] = []  # answers to give before the next real one
        self.retryable_once: set[str] = set()  # external_ids rejected as retryable the first time

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.busy:
            return self.busy.pop(0)
        path = request.url.path.removeprefix("/api/v1")
        if path == "/customers" and request.method == "GET":
            items = [{"id": i, "external_ref": r} for r, i in self.customers.items()]
            return httpx.Response(200, json={"items": items, "total": len(items), "next_cursor": None})
        if path == "/customers/resolve" and self.resolve:
            refs = json.loads(request.content)["external_refs"]
            known = [{"external_ref": r, "id": self.customers[r]} for r in refs if r in self.customers]
            unknown = [r for r in refs if r not in self.customers]
            return httpx.Response(200, json={"customers": known, "unknown": unknown})
        if path == "/customers/bulk":
            return self._report(json.loads(request.content)["rows"], self._customer)
        if path == "/interactions/bulk":
            return self._report(json.loads(request.content)["rows"], self._interaction)
        if path == "/customers/status/bulk" and self.status_bulk:
            return self._report(json.loads(request.content)["rows"], self._status)
        if path.startswith("/customers/") and path.endswith("/status") and path != "/customers/status/bulk":
            self.statuses[path.split("/")[2]] = json.loads(request.content)["status"]
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"title": "Not found"})

    def _report(self, rows: list[dict], handle) -> httpx.Response:
        report = [{"index": i, **handle(row)} for i, row in enumerate(rows)]
        return httpx.Response(200, json={"rows": report})

    def _customer(self, row: dict) -> dict:
        if row["external_ref"] in self.customers:
            return {"status": "existing", "id": self.customers[row["external_ref"]]}
        self.customers[row["external_ref"]] = f"c{len(self.customers) + 1}"
        return {"status": "created", "id": self.customers[row["external_ref"]]}

    def _interaction(self, row: dict) -> dict:
        key = row["external_id"]
        if key in self.retryable_once:
            self.retryable_once.discard(key)
            return {"status": "rejected", "retryable": True, "errors": [{"field": "customer_id", "message": "retry"}]}
        if row["customer_id"] not in self.customers.values():
            return {"status": "rejected", "errors": [{"field": "customer_id", "message": "Unknown customer"}]}
        if key in self.interactions:
            return {"status": "existing"}
        self.interactions[key] = row
        return {"status": "created"}

    def _status(self, item: dict) -> dict:
        customer = item["customer_id"]
        if customer not in self.customers.values():
            return {"status": "rejected", "errors": [{"field": "customer_id", "message": "Unknown customer"}]}
        if self.statuses.get(customer) == item["status"]:
            return {"status": "unchanged"}
        self.statuses[customer] = item["status"]
        return {"status": "changed"}


def gateway_for(platform: Platform, slept: list[float] | None = None) -> Gateway:
    return Gateway(
        "http://gw",
        transport=httpx.MockTransport(platform),
        retry_backoff_s=0.01,
        retries=8,
        sleep=(slept.append if slept is not None else lambda s: None),
    )


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def interactions_file(tmp_path: Path, n: int, customers: int = 3) -> Path:
    rows = [[f"r{i % customers}", "purchase", f"2026-01-{1 + i % 28:02d}", "10.50", "EUR"] for i in range(n)]
    return write_csv(tmp_path / "history.csv", ["Customer", "Kind", "When", "Amount", "Currency"], rows)


INTERACTION_MAP = {"customer_ref": "Customer", "type": "Kind", "occurred_at": "When", "amount": "Amount",
                   "currency": "Currency"}  # fmt: skip


def importer(tmp_path: Path, path: Path, platform: Platform, kind: str = "interactions", **settings) -> Importer:
    source = open_source(path)
    mapping, _ = build(kind, source.columns, settings.pop("given", INTERACTION_MAP if kind == "interactions" else {}))
    return Importer(source, mapping, Settings(kind, **settings), gateway=gateway_for(platform))


# ---- readers ---------------------------------------------------------------------------------------------


def test_csv_jsonl_and_parquet_give_the_same_records_with_their_lines(tmp_path: Path):
    rows = [{"name": "Acme", "seats": 3}, {"name": "Beta", "seats": 5}]
    write_csv(tmp_path / "a.csv", ["name", "seats"], [[r["name"], r["seats"]] for r in rows])
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")

    got = {fmt: list(records(open_source(tmp_path / f"a.{fmt}"))) for fmt in ("csv", "jsonl", "parquet")}
    assert [(r.line, r.values) for r in got["csv"]] == [
        (2, {"name": "Acme", "seats": "3"}),
        (3, {"name": "Beta", "seats": "5"}),
    ]
    assert [(r.line, r.values) for r in got["jsonl"]] == [(1, rows[0]), (2, rows[1])]
    assert [(r.line, r.values) for r in got["parquet"]] == [(1, rows[0]), (2, rows[1])]
    assert open_source(tmp_path / "a.parquet").total_rows == 2


def test_parquet_is_read_in_row_batches(tmp_path: Path, monkeypatch):
    pq.write_table(pa.Table.from_pylist([{"n": i} for i in range(25)]), tmp_path / "n.parquet", row_group_size=10)
    sizes: list[int] = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            sizes.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 4)
    assert [r.values["n"] for r in records(open_source(tmp_path / "n.parquet"))] == list(range(25))
    assert max(sizes) == 4


def test_a_quoted_multiline_cell_keeps_the_line_the_record_starts_on(tmp_path: Path):
    (tmp_path / "m.csv").write_text('name,note\n"A","two\nlines"\nB,x\n')
    assert [r.line for r in records(open_source(tmp_path / "m.csv"))] == [2, 4]


def test_bad_bytes_and_bad_json_are_rows_with_a_problem_naming_line_and_character(tmp_path: Path):
    (tmp_path / "l.csv").write_bytes(b"name\nAcme\nD\xe9lta\n")
    found = list(records(open_source(tmp_path / "l.csv")))
    assert found[0].problem is None
    assert found[1].problem.startswith("line 3, column 'name', character 2: byte 0xe9 is not valid utf-8")
    assert [r.values["name"] for r in records(open_source(tmp_path / "l.csv", encoding="latin-1"))] == ["Acme", "Délta"]

    (tmp_path / "j.jsonl").write_text('{"name": "a"}\n{"name": }\n')
    bad = list(records(open_source(tmp_path / "j.jsonl")))[1]
    assert bad.problem.startswith("line 2, character 10: not JSON")
    assert bad.values == {"_raw": '{"name": }'}


def test_a_header_that_cannot_be_read_stops_before_anything(tmp_path: Path):
    (tmp_path / "h.csv").write_bytes(b"n\xe9me\nA\n")
    with pytest.raises(SourceError, match="line 1, character 2"):
        open_source(tmp_path / "h.csv")
    (tmp_path / "d.csv").write_text("name,name\nA,B\n")
    with pytest.raises(SourceError, match="named twice: name"):
        open_source(tmp_path / "d.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(SourceError, match="--format"):
        open_source(tmp_path / "x.xlsx")


# ---- mapping and validation ----------------------------------------------------------------------------


def test_a_mapping_file_and_flags_map_columns_attributes_and_constants(tmp_path: Path):
    (tmp_path / "m.yaml").write_text("name: Customer Name\nattributes.plan: Plan\nsegment: '=retail'\n")
    given = load_mapping_file(tmp_path / "m.yaml") | parse_flags(["external_ref=ID"])
    mapping, unused = build("customers", ["Customer Name", "Plan", "ID", "attr.seats", "Junk"], given)
    assert mapping.columns == {"name": "Customer Name", "attributes.plan": "Plan", "external_ref": "ID",
                               "attributes.seats": "attr.seats"}  # fmt: skip
    assert unused == ["Junk"]
    (tmp_path / "m.json").write_text(json.dumps({"columns": {"name": "N"}}))
    assert load_mapping_file(tmp_path / "m.json") == {"name": "N"}


def test_a_mapping_that_does_not_fit_the_header_names_every_problem():
    with pytest.raises(MappingError) as caught:
        build("interactions", ["cust", "when"], {"occurred_at": "When", "colour": "cust"})
    message = str(caught.value)
    assert "unknown field 'colour'" in message
    assert "column 'When' is not in the file" in message
    assert "required column 'customer_id or customer_ref' is missing" in message
    assert "required column 'type' is missing" in message


def test_validation_messages_name_the_line_and_the_column(tmp_path: Path, capsys):
    path = write_csv(
        tmp_path / "c.csv",
        ["Name", "Ref", "State", "Left", "Why", "Plan"],
        [["Acme", "A1", "churned", "2026-13-01", "price", "pro"],
         ["Beta", "A2", "churned", "", "", "pro"],
         ["Gamma", "A1", "active", "", "", "pro"],
         ["Delta", "A4", "dormant", "", "", "pro"]],
    )  # fmt: skip
    flags = ["--map", "name=Name", "--map", "external_ref=Ref", "--map", "status=State", "--map", "churned_at=Left",
             "--map", "churn_reason=Why", "--map", "attributes.plan=Plan"]  # fmt: skip
    assert main(["import", "customers", str(path), "--dry-run", *flags]) == 1
    out = capsys.readouterr().out
    assert "0 valid, 4 rejected (dry run: nothing sent)" in out
    assert "line 2, column 'Left' (churned_at): Input should be a valid date" in out
    assert "line 3: a churned customer needs churn_reason and churned_at" in out
    assert "line 5, column 'State' (status): Input should be 'prospect', 'active', 'churned' or 'won_back'" in out
    # a duplicate although its first occurrence was itself rejected for another reason
    assert "line 4, column 'Ref' (external_ref): 'A1' is already on line 2 of this file" in out


def test_a_missing_required_column_fails_before_anything_is_sent(tmp_path: Path, capsys):
    platform = Platform()
    path = write_csv(tmp_path / "c.csv", ["Ref"], [["A1"]])
    assert main(["import", "customers", str(path)], gateway=gateway_for(platform)) == 2
    assert "c.csv: line 1: required column 'name' is missing" in capsys.readouterr().err
    assert platform.requests == []
    assert not (tmp_path / "c.rejects.csv").exists()


# ---- checkpoint and resume ----------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


def _stop_after(batches: int):
    def after(done: int) -> None:
        if done == batches:
            raise KeyboardInterrupt

    return after


def test_an_interrupted_import_resumes_and_stores_exactly_the_rows_of_an_uninterrupted_one(tmp_path: Path):
    reference = Platform()
    reference.customers = {"r0": "c1", "r1": "c2", "r2": "c3"}
    path = interactions_file(tmp_path, 23)
    assert importer(tmp_path, path, reference, chunk_size=5).run().created == 23

    platform = Platform()
    platform.customers = dict(reference.customers)
    with pytest.raises(KeyboardInterrupt):
        importer(tmp_path, path, platform, chunk_size=5, after_batch=_stop_after(2)).run()
    checkpoint = Checkpoint.load(tmp_path / "history.csv.interactions.checkpoint.json")
    assert checkpoint is not None and checkpoint.batches == 2 and checkpoint.through_line == 11
    assert len(platform.interactions) == 10

    sent_before = len([r for r in platform.requests if r.url.path.endswith("/bulk")])
    outcome = importer(tmp_path, path, platform, chunk_size=5).run()
    assert outcome.resumed_from == 11 and outcome.created == 23 and outcome.existing == 0
    assert platform.interactions == reference.interactions
    bulk = [json.loads(r.content)["rows"] for r in platform.requests if r.url.path.endswith("/bulk")]
    assert [len(rows) for rows in bulk[sent_before:]] == [5, 5, 3]  # nothing sent twice
    assert not (tmp_path / "history.csv.interactions.checkpoint.json").exists()


def test_a_batch_stored_just_before_a_crash_is_not_stored_twice(tmp_path: Path, monkeypatch):
    platform = Platform()
    platform.customers = {"r0": "c1", "r1": "c2", "r2": "c3"}
    path = interactions_file(tmp_path, 10)
    # The platform stores the second batch, then the process dies before writing its checkpoint.
    first = importer(tmp_path, path, platform, chunk_size=5)
    original = Checkpoint.save
    saves = []

    def crash_on_second(self, where):
        saves.append(self.batches)
        if self.batches == 2:
            raise Interrupt
        original(self, where)

    monkeypatch.setattr(Checkpoint, "save", crash_on_second)
    with pytest.raises(Interrupt):
        first.run()
    monkeypatch.setattr(Checkpoint, "save", original)
    outcome = importer(tmp_path, path, platform, chunk_size=5).run()
    assert (outcome.created, outcome.existing) == (5 + 0, 5)  # the second batch comes back `existing`
    assert len(platform.interactions) == 10


def test_a_checkpoint_of_another_file_or_mapping_is_refused(tmp_path: Path):
    platform = Platform()
    platform.customers = {"r0": "c1", "r1": "c2", "r2": "c3"}
    path = interactions_file(tmp_path, 10)
    with pytest.raises(KeyboardInterrupt):
        importer(tmp_path, path, platform, chunk_size=5, after_batch=_stop_after(1)).run()
    with pytest.raises(Exception, match="another mapping or --chunk-size"):
        importer(tmp_path, path, platform, chunk_size=4).run()
    path.write_text(path.read_text() + "r1,call,2026-02-01,,\n")
    with pytest.raises(Exception, match="belongs to another file"):
        importer(tmp_path, path, platform, chunk_size=5).run()
    assert importer(tmp_path, path, platform, chunk_size=5, restart=True).run().rejected == 0


def test_rejected_rows_are_written_once_even_across_a_resume(tmp_path: Path):
    platform = Platform()
    platform.customers = {"r0": "c1"}
    path = interactions_file(tmp_path, 12, customers=3)  # r1 and r2 are unknown to the platform
    with pytest.raises(KeyboardInterrupt):
        importer(tmp_path, path, platform, chunk_size=4, after_batch=_stop_after(1)).run()
    outcome = importer(tmp_path, path, platform, chunk_size=4).run()
    assert (outcome.created, outcome.rejected) == (4, 8)
    rejects = list(csv.DictReader((tmp_path / "history.rejects.csv").open()))
    assert len(rejects) == 8
    assert {r["Customer"] for r in rejects} == {"r1", "r2"}
    assert rejects[0]["_error"] == "customer_ref: no customer with external_ref 'r1'"


@pytest.mark.parametrize("by_reference", [True, False])
def test_customer_references_give_the_same_import_by_reference_or_from_the_listing(tmp_path: Path, by_reference: bool):
    platform = Platform(resolve=by_reference)
    platform.customers = {"r0": "c1", "r1": "c2"}
    path = interactions_file(tmp_path, 12, customers=3)  # r2 is unknown to the platform
    outcome = importer(tmp_path, path, platform, chunk_size=4).run()
    assert (outcome.created, outcome.rejected) == (8, 4)
    assert {row["customer_id"] for row in platform.interactions.values()} == {"c1", "c2"}
    asked = [r.url.path for r in platform.requests if r.url.path != "/api/v1/interactions/bulk"]
    if by_reference:  # each reference asked once, with the first batch that names it; the listing never read
        assert asked == ["/api/v1/customers/resolve"]
        assert json.loads(platform.requests[0].content) == {"external_refs": ["r0", "r1", "r2"]}
    else:  # no such route: the whole listing, read once
        assert asked == ["/api/v1/customers/resolve", "/api/v1/customers"]


def test_references_are_asked_in_chunks_the_route_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("cli.senders.RESOLVE_CHUNK", 2)
    platform = Platform()
    platform.customers = {"r0": "c1", "r1": "c2", "r2": "c3"}
    outcome = importer(tmp_path, interactions_file(tmp_path, 6, customers=3), platform, chunk_size=10).run()
    assert outcome.created == 6
    sent = [json.loads(r.content)["external_refs"] for r in platform.requests if r.url.path.endswith("/resolve")]
    assert sent == [["r0", "r1"], ["r2"]]


def test_a_reference_no_customer_can_carry_is_an_unknown_row_and_is_never_asked(tmp_path: Path):
    platform = Platform()
    platform.customers = {"r0": "c1"}
    too_long = "r" * 101  # longer than any external_ref: the route would refuse the whole request
    rows = [["r0", "purchase", "2026-01-01", "1", "EUR"], [too_long, "purchase", "2026-01-02", "1", "EUR"]]
    path = write_csv(tmp_path / "history.csv", ["Customer", "Kind", "When", "Amount", "Currency"], rows)
    outcome = importer(tmp_path, path, platform, chunk_size=10).run()
    assert (outcome.created, outcome.rejected) == (1, 1)
    sent = [json.loads(r.content)["external_refs"] for r in platform.requests if r.url.path.endswith("/resolve")]
    assert sent == [["r0"]]


# ---- rejects round trip ---------------------------------------------------------------------------------


def test_a_fixed_rejects_file_imports_again_in_the_same_format(tmp_path: Path, capsys):
    platform = Platform()
    path = write_csv(
        tmp_path / "c.csv", ["name", "external_ref", "attr.plan"], [["Acme", "A1", "pro"], ["", "A2", "x"]]
    )
    assert main(["import", "customers", str(path)], gateway=gateway_for(platform)) == 1
    rejects = tmp_path / "c.rejects.csv"
    rows = list(csv.DictReader(rejects.open()))
    assert rows == [{"name": "", "external_ref": "A2", "attr.plan": "x", "_error": rows[0]["_error"]}]
    assert rows[0]["_error"].startswith("line 3, column 'name'")
    rejects.write_text(rejects.read_text().replace("\n,A2", "\nBeta,A2"))
    capsys.readouterr()
    assert main(["import", "customers", str(rejects)], gateway=gateway_for(platform)) == 0
    assert "1 created" in capsys.readouterr().out
    assert set(platform.customers) == {"A1", "A2"}

    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"name": "Gamma", "external_ref": "A3"}\n{"external_ref": "A4", "attributes.tier": "gold"}\n')
    assert main(["import", "customers", str(jsonl)], gateway=gateway_for(platform)) == 1
    line = json.loads((tmp_path / "c.rejects.jsonl").read_text())
    assert line["external_ref"] == "A4" and line["_error"].startswith("line 2")


def test_a_parquet_input_gets_parquet_rejects_with_its_schema_even_across_a_resume(tmp_path: Path, capsys):
    from datetime import date
    from decimal import Decimal

    platform = Platform()
    platform.customers = {"r0": "c1"}
    schema = pa.schema(
        [("Customer", pa.string()), ("Kind", pa.string()), ("When", pa.date32()), ("Amount", pa.decimal128(9, 2)),
         ("Currency", pa.string()), ("Units", pa.int64())]
    )  # fmt: skip
    rows = [
        {"Customer": f"r{i % 3}", "Kind": "purchase", "When": date(2026, 1, 1 + i), "Amount": Decimal("10.50"),
         "Currency": "EUR", "Units": i}
        for i in range(12)
    ]  # fmt: skip
    path = tmp_path / "history.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    with pytest.raises(KeyboardInterrupt):
        importer(tmp_path, path, platform, chunk_size=4, after_batch=_stop_after(1)).run()
    assert not (tmp_path / "history.rejects.parquet").exists()  # staged until the import is whole
    outcome = importer(tmp_path, path, platform, chunk_size=4).run()
    assert (outcome.created, outcome.rejected) == (4, 8)
    rejects = pq.read_table(tmp_path / "history.rejects.parquet")
    assert rejects.schema == schema.append(pa.field("_error", pa.string()))
    assert rejects.column("Units").to_pylist() == [i for i in range(12) if i % 3]
    assert rejects.column("When").to_pylist()[0] == date(2026, 1, 2)
    assert rejects.column("Amount").to_pylist()[0] == Decimal("10.50")
    assert rejects.column("_error").to_pylist()[0] == "customer_ref: no customer with external_ref 'r1'"
    assert [p.name for p in tmp_path.iterdir() if "rejects" in p.name] == ["history.rejects.parquet"]

    # Fixed, the rejects file imports again as it is (its _error column is not a field).
    platform.customers |= {"r1": "c2", "r2": "c3"}
    source = open_source(tmp_path / "history.rejects.parquet")
    mapping, _ = build("interactions", source.columns, INTERACTION_MAP)
    again = Importer(source, mapping, Settings("interactions"), gateway=gateway_for(platform)).run()
    assert (again.created, again.rejected) == (8, 0)


# ---- retries ---------------------------------------------------------------------------------------------


def test_retry_after_in_seconds_or_as_a_date_is_honoured_capped_and_jittered():
    assert retry_after_s("3") == 3.0
    assert retry_after_s("nonsense") is None
    from datetime import UTC, datetime

    assert retry_after_s("Sun, 06 Dec 2026 10:00:10 GMT", now=datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)) == 10.0
    assert retry_wait_s(1, 3.0, backoff_s=0.5, rng=lambda: 0.0) == 3.0
    assert retry_wait_s(1, 3.0, backoff_s=0.5, rng=lambda: 1.0) == pytest.approx(3.6)
    assert retry_wait_s(1, 500.0, backoff_s=0.5, cap_s=60, rng=lambda: 1.0) == 60.0
    assert retry_wait_s(3, None, backoff_s=0.5, rng=lambda: 0.0) == 2.0


def test_429_and_503_are_retried_after_what_retry_after_asks(tmp_path: Path):
    platform = Platform()
    platform.busy = [
        httpx.Response(429, headers={"Retry-After": "2"}, json={"title": "Too many requests"}),
        httpx.Response(503, headers={"Retry-After": "1"}, json={"title": "Unavailable"}),
    ]
    slept: list[float] = []
    path = write_csv(tmp_path / "c.csv", ["name", "external_ref"], [["Acme", "A1"]])
    assert main(["import", "customers", str(path)], gateway=gateway_for(platform, slept)) == 0
    assert 2.0 <= slept[0] <= 2.4 and 1.0 <= slept[1] <= 1.2
    assert platform.customers == {"A1": "c1"}
    # the same batch, with the same idempotency key, each time
    keys = {r.headers["idempotency-key"] for r in platform.requests}
    assert len(keys) == 1


def test_retryable_rows_are_sent_again_alone(tmp_path: Path):
    platform = Platform()
    platform.customers = {"r0": "c1", "r1": "c2", "r2": "c3"}
    path = interactions_file(tmp_path, 4)
    first = importer(tmp_path, path, platform, chunk_size=10)
    key = f"import-{first.identity[:16]}-3"
    platform.retryable_once = {key}
    outcome = first.run()
    assert (outcome.created, outcome.rejected, outcome.retried_rows) == (4, 0, 1)
    bulk = [json.loads(r.content)["rows"] for r in platform.requests if r.url.path.endswith("/bulk")]
    assert [len(b) for b in bulk] == [4, 1] and bulk[1][0]["external_id"] == key


# ---- statuses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bulk", [True, False])
def test_statuses_use_the_bulk_route_or_one_change_per_customer(tmp_path: Path, bulk: bool):
    platform = Platform(status_bulk=bulk)
    platform.customers = {"A1": "c1", "A2": "c2"}
    path = write_csv(
        tmp_path / "s.csv",
        ["customer_ref", "status", "reason", "churned_at"],
        [
            ["A1", "churned", "price", "2026-03-01"],
            ["A2", "won_back", "", ""],
            ["A9", "churned", "price", "2026-03-01"],
        ],
    )
    outcome = importer(tmp_path, path, platform, kind="statuses", given={}).run()
    assert (outcome.created, outcome.rejected) == (2, 1)
    assert platform.statuses == {"c1": "churned", "c2": "won_back"}
    paths = {r.url.path for r in platform.requests}
    assert ("/api/v1/customers/c1/status" in paths) is not bulk
    assert outcome.listed == ["line 4: customer_ref: no customer with external_ref 'A9'"]
    if bulk:  # sent again: the platform has it so already
        again = importer(tmp_path, path, platform, kind="statuses", given={}, restart=True).run()
        assert (again.created, again.existing) == (0, 2)


# ---- batches in flight ----------------------------------------------------------------------------------


class SlowFirstBatch(Platform):
    """Answers the first bulk batch only once the third has arrived: later batches finish first."""

    def __init__(self) -> None:
        super().__init__()
        self.third_arrived = threading.Event()
        self.bulk_seen = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/interactions/bulk"):
            with self.lock:
                self.bulk_seen += 1
                seen = self.bulk_seen
            if seen == 3:
                self.third_arrived.set()
            if seen == 1:
                assert self.third_arrived.wait(5)
        with self.lock:
            return super().__call__(request)


def test_batches_in_flight_are_acknowledged_in_file_order(tmp_path: Path):
    platform = SlowFirstBatch()
    platform.customers = {"r0": "c1", "r1": "c2", "r2": "c3"}
    path = interactions_file(tmp_path, 23)
    checkpoints: list[int] = []
    run = importer(tmp_path, path, platform, chunk_size=5, concurrency=3)

    def through_line() -> int:
        checkpoint = Checkpoint.load(tmp_path / "history.csv.interactions.checkpoint.json")
        assert checkpoint is not None
        return checkpoint.through_line

    run.settings.after_batch = lambda batches: checkpoints.append(through_line())
    outcome = run.run()
    assert (outcome.created, outcome.existing, outcome.rejected) == (23, 0, 0)
    # The first batch answered last of three, yet the checkpoint moved batch by batch, in file order.
    assert checkpoints == [6, 11, 16, 21, 24]
    assert len(platform.interactions) == 23


class FailingBatch(Platform):
    """Refuses the bulk request carrying one line's row as a whole; the batches after it are stored."""

    def __init__(self, refuse_line: int) -> None:
        super().__init__()
        self.refuse = f"-{refuse_line}"
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/interactions/bulk") and self.refuse:
            rows = json.loads(request.content)["rows"]
            if any(row["external_id"].endswith(self.refuse) for row in rows):
                time.sleep(0.05)  # the later batches in flight are answered first
                return httpx.Response(400, json={"title": "Bad request"})
        with self.lock:
            return super().__call__(request)


def test_a_checkpoint_never_passes_an_unacknowledged_batch_and_a_resume_stores_each_row_once(tmp_path: Path):
    platform = FailingBatch(refuse_line=8)  # line 8 is in the second batch (lines 7 to 11)
    platform.customers = {"r0": "c1", "r1": "c2", "r2": "c3"}
    path = interactions_file(tmp_path, 23)
    with pytest.raises(GatewayError):
        importer(tmp_path, path, platform, chunk_size=5, concurrency=4).run()
    checkpoint = Checkpoint.load(tmp_path / "history.csv.interactions.checkpoint.json")
    assert checkpoint is not None and (checkpoint.batches, checkpoint.through_line, checkpoint.created) == (1, 6, 5)
    assert len(platform.interactions) > 5  # later batches were stored while the second was refused

    platform.refuse = ""
    outcome = importer(tmp_path, path, platform, chunk_size=5, concurrency=4).run()
    assert outcome.resumed_from == 6
    assert outcome.created + outcome.existing == 23 and outcome.rejected == 0
    assert len(platform.interactions) == 23
    lines = sorted(int(key.rsplit("-", 1)[1]) for key in platform.interactions)
    assert lines == list(range(2, 25))


def test_concurrency_must_be_positive(capsys):
    assert main(["import", "interactions", "x.csv", "--concurrency", "0"]) != 0
    assert "--concurrency" in capsys.readouterr().err


def test_bulk_rows_rejected_as_retryable_are_sent_again_before_they_count_as_rejected():
    from cli.client import import_rows
    from cli.rows import Row

    platform = Platform()
    platform.customers = {"r0": "c1"}
    platform.retryable_once = {"x1", "x3"}
    rows = [
        Row(line=n + 1, body={"customer_id": "c1" if n != 2 else "nobody", "type": "purchase", "external_id": f"x{n}"})
        for n in range(4)
    ]
    slept: list[float] = []
    summary = import_rows(gateway_for(platform, slept), "/interactions/bulk", rows, label="t", chunk_size=4)
    assert (summary.created, summary.rejected, summary.row_retries) == (3, [(3, "customer_id: Unknown customer")], 2)
    assert set(platform.interactions) == {"x0", "x1", "x3"}
    resent = json.loads(platform.requests[1].content)["rows"]
    assert [r["external_id"] for r in resent] == ["x1", "x3"] and len(slept) == 1
