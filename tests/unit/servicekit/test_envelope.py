from datetime import UTC, datetime

import pydantic
import pytest
from cloudevents.core.formats.json import JSONFormat

from contracts import topics
from contracts.customer import CustomerCreated
from contracts.interaction import ComplaintOpened
from contracts.registry import UnknownEventType
from servicekit.events import REGISTRY, CloudEvent


def _created() -> CustomerCreated:
    return CustomerCreated(
        customer_id="c-1", kind="person", status="active", created_at=datetime(2026, 1, 2, tzinfo=UTC)
    )


def test_envelope_is_valid_cloudevents_1_0_json_for_the_reference_sdk():
    envelope = CloudEvent.wrap(_created(), source="/crm/customer", correlation_id="req-1")
    parsed = JSONFormat().read(None, envelope.to_json())
    assert parsed.get_specversion() == "1.0"
    assert parsed.get_type() == "customer.created"
    assert parsed.get_source() == "/crm/customer"
    assert parsed.get_subject() == "c-1"
    assert parsed.get_id() == envelope.id
    assert parsed.get_extension("correlationid") == "req-1"
    assert parsed.get_data()["customer_id"] == "c-1"


def test_subject_and_kafka_key_is_the_customer_id():
    envelope = CloudEvent.wrap(_created(), source="/crm/customer")
    assert envelope.subject == "c-1"
    assert envelope.dataschema == "urn:crm:event:customer.created:v1"


def test_envelope_round_trips_through_json_and_the_registry():
    envelope = CloudEvent.wrap(_created(), source="/crm/customer")
    received = REGISTRY.parse(CloudEvent.from_json(envelope.to_json()))
    assert isinstance(received.data, CustomerCreated)
    assert received.data == _created()
    assert received.id == envelope.id


def test_contracts_ignore_unknown_fields_so_producers_can_add_fields():
    envelope = CloudEvent.wrap(_created(), source="/crm/customer")
    envelope.data["added_later"] = 42
    assert REGISTRY.parse(envelope).data.customer_id == "c-1"


def test_data_that_breaks_its_contract_is_rejected():
    envelope = CloudEvent(source="/crm/interaction", type=ComplaintOpened.event_type, data={"customer_id": "c"})
    with pytest.raises(pydantic.ValidationError):
        REGISTRY.parse(envelope)


def test_unknown_event_type_is_reported():
    with pytest.raises(UnknownEventType):
        REGISTRY.parse(CloudEvent(source="/x", type="no.such.event"))


def test_every_registered_contract_names_a_known_topic():
    known = set(topics.ALL)
    for model in REGISTRY:
        assert model.topic in known, model.event_type


def test_registering_a_different_model_under_an_existing_type_fails():
    class Impostor(CustomerCreated):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        REGISTRY.register(Impostor)


def test_parsed_envelope_values_are_not_kept_in_the_process_wide_string_cache():
    # With pydantic-core's default string cache, parsing the same bytes twice hands back the very same
    # cached str objects: values that outlive their batch. Only field names may be cached.
    raw = CloudEvent.wrap(_created(), source="/crm/customer", correlation_id="req-1").to_json()
    first, second = CloudEvent.from_json(raw), CloudEvent.from_json(raw)
    assert first == second
    assert first.id is not second.id
    assert first.subject is not second.subject
    assert first.source is not second.source
