import io
from datetime import UTC, datetime
from decimal import Decimal

from cli.rows import cdnow_customers, cdnow_interaction, customers_from_csv, interactions_from_csv, parse_cdnow


def test_customer_csv_rows_keep_their_line_and_type_their_tags_and_attributes():
    text = (
        "name,kind,external_ref,tags,attr.plan,attr.monthly_charge,attr.seats,attr.eu,email\n"
        "Acme GmbH,company,ERP-1,key account|berlin,gold,99.5,12,true,\n"
        '"Smith, Jane",person,,,,,,,jane@example.com\n'
    )
    parsed = customers_from_csv(io.StringIO(text))
    assert [row.line for row in parsed.rows] == [2, 3]
    acme, jane = (row.body for row in parsed.rows)
    assert acme == {
        "name": "Acme GmbH",
        "kind": "company",
        "external_ref": "ERP-1",
        "tags": ["key account", "berlin"],
        "attributes": {"plan": "gold", "monthly_charge": 99.5, "seats": 12, "eu": True},
    }
    assert jane == {"name": "Smith, Jane", "kind": "person", "email": "jane@example.com"}  # empty cells left out
    assert parsed.unknown_columns == []


def test_a_row_with_more_cells_than_the_header_is_rejected_by_line_and_unknown_columns_are_named():
    text = "name,colour\nA,red\nB,blue,extra\n"
    parsed = customers_from_csv(io.StringIO(text))
    assert [row.line for row in parsed.rows] == [2]
    assert parsed.rejected == [(3, "1 cell(s) more than the header has")]
    assert parsed.unknown_columns == ["colour"]


def test_interaction_csv_rows_are_sent_as_given_and_multiline_text_counts_its_lines():
    text = (
        "customer_id,type,occurred_at,amount,currency,text\n"
        'c-1,complaint,2026-01-02,,,"late\nand broken"\n'
        "c-2,purchase,2026-01-03,10.00,EUR,\n"
    )
    parsed = interactions_from_csv(io.StringIO(text))
    assert [(row.line, row.body) for row in parsed.rows] == [
        (3, {"customer_id": "c-1", "type": "complaint", "occurred_at": "2026-01-02", "text": "late\nand broken"}),
        (
            4,
            {
                "customer_id": "c-2",
                "type": "purchase",
                "occurred_at": "2026-01-03",
                "amount": "10.00",
                "currency": "EUR",
            },
        ),
    ]


CDNOW = (
    " 00004 0001 19970101  2   29.33\r\n"
    " 00004 0001 19970118  2   29.73\r\n"
    " 00021 0002 19970101  3   63.34\r\n"
    "\n"
    " bad line\n"
)


def test_cdnow_lines_become_one_customer_per_id_and_one_usd_purchase_per_line():
    purchases, rejected = parse_cdnow(io.StringIO(CDNOW))
    assert rejected == [(5, "expected 5 columns, found 2")]
    assert [(p.line, p.customer, p.quantity, p.amount) for p in purchases] == [
        (1, "4", 2, Decimal("29.33")),
        (2, "4", 2, Decimal("29.73")),
        (3, "21", 3, Decimal("63.34")),
    ]
    customers = cdnow_customers(purchases)
    assert [(c.line, c.body["external_ref"]) for c in customers] == [(1, "cdnow-4"), (3, "cdnow-21")]
    row = cdnow_interaction(purchases[1], "uuid-4")
    assert row.body == {
        "customer_id": "uuid-4",
        "type": "purchase",
        "channel": "web",
        "initiated_by": "customer",
        "occurred_at": "1997-01-18T00:00:00Z",
        "quantity": 2,
        "amount": "29.73",
        "currency": "USD",
        "external_id": "cdnow-2",
    }
    assert purchases[0].day == datetime(1997, 1, 1, tzinfo=UTC)
