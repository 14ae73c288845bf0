"""The OpenTelemetry SDK internals servicekit.tracing_wire relies on are where and what it expects.

`EncodingBatchSpanProcessor` queues encoded spans through `BatchSpanProcessor._batch_processor.emit`, and
`LeanOTLPSpanExporter` posts its own body through `OTLPSpanExporter._client.export`, reading `.success` from
the answer and honouring `._shutdown`. None of these is public API: they hold for the versions pinned in
constraints.txt, and this test is what fails, loudly, when an upgrade changes them.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

from opentelemetry.exporter.otlp.common import http as otlp_http
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._shared_internal import BatchProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from servicekit.settings import REPO_ROOT
from servicekit.tracing_wire import EncodingBatchSpanProcessor, LeanOTLPSpanExporter

# What servicekit/tracing_wire.py's "PINNED SDK INTERNALS" comment names; constraints.txt must pin exactly these.
PINNED = {
    "opentelemetry-sdk": "1.45.1",
    "opentelemetry-exporter-otlp-proto-http": "1.45.1",
    "opentelemetry-exporter-otlp-common": "0.66b1",
    "opentelemetry-exporter-http-transport": "0.66b1",
}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in Path(REPO_ROOT / "constraints.txt").read_text().splitlines():
        name, sep, pinned = line.partition("==")
        if sep:
            pins[name.strip().lower()] = pinned.strip()
    return pins


def test_the_pinned_versions_are_the_ones_installed_and_named_in_the_code():
    pins = _constraints()
    comment = (REPO_ROOT / "servicekit" / "tracing_wire.py").read_text()
    for package, pinned in PINNED.items():
        assert pins.get(package) == pinned, f"constraints.txt pins {package}=={pins.get(package)}, not {pinned}"
        assert version(package) == pinned, f"{package} {version(package)} installed, the code expects {pinned}"
        assert f"{package}=={pinned}" in comment


def test_the_batch_span_processor_keeps_a_shared_batch_processor_with_emit():
    processor = EncodingBatchSpanProcessor(InMemorySpanExporter())
    try:
        inner = processor._batch_processor
        assert isinstance(inner, BatchProcessor)
        assert list(inspect.signature(inner.emit).parameters) == ["data"]
        assert "_batch_processor" in inspect.getsource(BatchSpanProcessor.on_end)
        # What it queues reaches the exporter unchanged, as one item of a batch.
        seen: list[list[object]] = []
        inner._exporter = type("Recorder", (), {"export": lambda _, b: seen.append(b), "shutdown": lambda _: None})()
        processor.emit_encoded((0, b"span"))
        processor.force_flush()
        assert seen == [[(0, b"span")]]
    finally:
        processor.shutdown()


def test_the_otlp_exporter_keeps_a_client_that_posts_bytes_and_answers_success():
    exporter = LeanOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._shutdown is False
    client = exporter._client
    assert isinstance(client, otlp_http._OTLPHTTPClient)
    assert list(inspect.signature(client.export).parameters) == ["data"]
    fields = {f.name for f in otlp_http._ExportResult.__dataclass_fields__.values()}
    assert "success" in fields
    exporter.shutdown()
    assert exporter._shutdown is True
