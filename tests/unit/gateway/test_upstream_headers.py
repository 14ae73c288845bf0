from gateway.upstream_headers import downstream_response_headers, public_location, upstream_request_headers

BASE = "http://10.0.0.5:8001"


def test_only_allow_listed_request_headers_are_forwarded() -> None:
    headers = upstream_request_headers(
        [
            ("Authorization", "Bearer t"),
            ("Cookie", "a=b"),
            ("Connection", "keep-alive"),
            ("Host", "api.example"),
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "k"),
            ("If-Match", '"2"'),
            ("X-Request-ID", "client-id"),
        ],
        request_id="edge-id",
        client_host="203.0.113.9",
        scheme="https",
    )

    assert dict(headers) == {
        "content-type": "application/json",
        "idempotency-key": "k",
        "if-match": '"2"',
        "x-request-id": "edge-id",
        "x-forwarded-for": "203.0.113.9",
        "x-forwarded-proto": "https",
        "accept-encoding": "identity",
    }


def test_request_id_is_always_the_current_one_not_the_clients_raw_header() -> None:
    headers = upstream_request_headers([("x-request-id", "other")], request_id="current")

    assert [v for k, v in headers if k == "x-request-id"] == ["current"]


def test_forwarded_for_chain_is_extended_with_the_client() -> None:
    headers = dict(
        upstream_request_headers([("X-Forwarded-For", "198.51.100.1")], request_id="r", client_host="10.1.1.1")
    )

    assert headers["x-forwarded-for"] == "198.51.100.1, 10.1.1.1"


def test_hop_by_hop_and_gateway_owned_response_headers_are_dropped() -> None:
    raw = [
        (b"Content-Type", b"application/problem+json"),
        (b"Connection", b"keep-alive, X-Private"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"X-Private", b"hop"),
        (b"Content-Length", b"12"),
        (b"Server", b"uvicorn"),
        (b"Date", b"Mon, 01 Jan 2026 00:00:00 GMT"),
        (b"X-Request-ID", b"r"),
        (b"ETag", b'"4"'),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]

    out = downstream_response_headers(raw, upstream_base=BASE)

    assert out == [
        (b"content-type", b"application/problem+json"),
        (b"etag", b'"4"'),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_content_length_is_kept_when_asked_for_head() -> None:
    out = downstream_response_headers([(b"content-length", b"12")], upstream_base=BASE, keep_content_length=True)

    assert out == [(b"content-length", b"12")]


def test_location_is_rewritten_to_the_public_path() -> None:
    out = downstream_response_headers([(b"Location", b"/customers/c-1")], upstream_base=BASE)

    assert out == [(b"location", b"/api/v1/customers/c-1")]


def test_public_location_hides_the_service_address() -> None:
    assert public_location(f"{BASE}/customers?page=2", BASE) == "/api/v1/customers?page=2"
    assert public_location("/api/v1/customers/c-1", BASE) == "/api/v1/customers/c-1"
    assert public_location("https://elsewhere.example/x", BASE) == "https://elsewhere.example/x"
    assert public_location("//evil.example/x", BASE) == "//evil.example/x"
