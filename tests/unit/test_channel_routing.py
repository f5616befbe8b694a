"""Delivery channels restricted by audience and location: which lead alerts get an outbox row on
which channel (lisguard.alerting.routing), the settings that say so, and how the service composes
them (lisguard.transport.delivery)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from lisguard.alerting.routing import AlertRouting, ChannelRoute
from lisguard.domain.alerts import Alert, Audience, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.settings import DeliverySettings, Hl7OutboundSettings, Settings, WebhookSettings
from lisguard.store.base import NewMessage
from lisguard.store.memory import MemoryStore
from lisguard.transport.delivery import Delivery

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

RULE_OF = {
    Audience.BLOOD_BANK: (RuleId.BB_SEROLOGY, Recommendation.DTT_TREATED_REAGENT_CELLS),
    Audience.SEROLOGY: (RuleId.IG_PASSIVE_ANTIBODY, Recommendation.PASSIVE_ANTIBODY_FROM_IG),
    Audience.CLINIC: (RuleId.IVIG_PROPHYLAXIS, Recommendation.PRIMARY_IVIG_PROPHYLAXIS),
    Audience.PROTEIN_LAB: (RuleId.SPEP_IFE, Recommendation.DRUG_SPECIFIC_IFE_REFLEX),
    Audience.FLOW_LAB: (RuleId.FLOW_MRD, Recommendation.CD38_INDEPENDENT_GATING),
}


def make_alert(
    audience: Audience = Audience.BLOOD_BANK,
    location: str = "4W",
    *,
    patient: str = "MRN1",
    order: str = "ORD1",
    processing_id: str = "P",
) -> Alert:
    rule, rec = RULE_OF[audience]
    key = f"{patient}^HOSP"
    return Alert(
        id=alert_id(key, rule, order, processing_id),
        rule=rule,
        patient=patient,
        patient_authority="HOSP",
        message=f"M-{order}",
        order=order,
        severity=Severity.MEDIUM,
        recommendations=(rec,),
        text="text",
        location=location,
        processing_id=processing_id,
        audience=audience,
    )


# ---------------------------------------------------------------- one channel's filter


def test_an_unrestricted_channel_takes_every_production_alert() -> None:
    route = ChannelRoute("webhook")
    for audience in Audience:
        assert route.admits(make_alert(audience, location="ANYWHERE"))
    assert route.admits(make_alert(location=""))  # no location known


def test_audiences_admit_only_those_audiences() -> None:
    route = ChannelRoute("webhook", audiences=frozenset({Audience.CLINIC, Audience.SEROLOGY}))
    admitted = {a for a in Audience if route.admits(make_alert(a))}
    assert admitted == {Audience.CLINIC, Audience.SEROLOGY}


def test_audiences_may_be_given_as_their_values() -> None:
    route = ChannelRoute("hl7", audiences=frozenset({"clinic"}))  # type: ignore[arg-type]
    assert route.audiences == frozenset({Audience.CLINIC})
    with pytest.raises(ValueError):
        ChannelRoute("hl7", audiences=frozenset({"nursing"}))  # type: ignore[arg-type]


@pytest.mark.parametrize("location", ["4W", "4w", " 4W ", "4W\t"])
def test_locations_match_after_strip_and_case_insensitively(location: str) -> None:
    route = ChannelRoute("hl7", locations=frozenset({" 4w", "ONC"}))
    assert route.admits(make_alert(location=location))


@pytest.mark.parametrize("location", ["4WEST", "4", "", "ONC 2", "W4"])
def test_locations_match_exactly_not_by_prefix_and_never_an_unknown_location(
    location: str,
) -> None:
    route = ChannelRoute("hl7", locations=frozenset({"4W", "ONC"}))
    assert not route.admits(make_alert(location=location))


def test_audiences_and_locations_must_both_admit() -> None:
    route = ChannelRoute(
        "webhook", audiences=frozenset({Audience.CLINIC}), locations=frozenset({"MYELOMA"})
    )
    assert route.admits(make_alert(Audience.CLINIC, "myeloma"))
    assert not route.admits(make_alert(Audience.CLINIC, "4W"))  # right audience, other ward
    assert not route.admits(make_alert(Audience.BLOOD_BANK, "MYELOMA"))  # right ward, other bench


def test_test_alerts_go_only_to_channels_that_take_them_whatever_else_admits() -> None:
    test_alert = make_alert(Audience.CLINIC, "MYELOMA", processing_id="T")
    assert not ChannelRoute("webhook").admits(test_alert)
    assert not ChannelRoute("webhook", audiences=frozenset({Audience.CLINIC})).admits(test_alert)
    assert ChannelRoute("webhook", test_alerts=True).admits(test_alert)
    restricted = ChannelRoute(
        "webhook", audiences=frozenset({Audience.BLOOD_BANK}), test_alerts=True
    )
    assert not restricted.admits(test_alert)  # a test receiver's audience still counts


# ---------------------------------------------------------------- outbox rows of a lead


async def route_one(routing: AlertRouting, alert: Alert, store: MemoryStore) -> list[str]:
    """Store the alert as the ingest transaction does, route it, return its outbox channels."""
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(
                raw=b"MSH|...",
                content_hash=f"h-{alert.id}",
                received_at=NOW,
                ack="MSA|AA",
                outcome="AA",
                key=MessageKey("LAB", "HOSP", f"C-{alert.id}"),
            )
        )
        await tx.add_alerts([alert], message_id=message_id, created_at=NOW)
        await tx.add_audit(await routing.route(store.desk, tx, [alert], NOW))
    return [d.channel for d in await store.desk.deliveries(alert.id)]


async def test_each_lead_gets_rows_only_on_the_channels_that_admit_it() -> None:
    store = MemoryStore()
    await store.open()
    routing = AlertRouting(
        channels=(
            ChannelRoute("webhook", audiences=frozenset({Audience.CLINIC})),
            ChannelRoute("hl7", locations=frozenset({"4W"})),
        ),
        collapse_window=timedelta(0),
    )
    assert routing.names == ("webhook", "hl7")
    clinic_4w = make_alert(Audience.CLINIC, "4W", patient="A")
    clinic_onc = make_alert(Audience.CLINIC, "ONC", patient="B")
    bench_4w = make_alert(Audience.BLOOD_BANK, "4w", patient="C")
    bench_onc = make_alert(Audience.BLOOD_BANK, "ONC", patient="D")
    assert await route_one(routing, clinic_4w, store) == ["hl7", "webhook"]
    assert await route_one(routing, clinic_onc, store) == ["webhook"]
    assert await route_one(routing, bench_4w, store) == ["hl7"]
    assert await route_one(routing, bench_onc, store) == []  # no channel: the page only
    record = await store.desk.get(bench_onc.id)
    assert record is not None and record.status == "open"  # still queued for the page


async def test_collapsing_is_unchanged_by_restrictions() -> None:
    """A repeat collapses into its lead whichever channels take them: no row of its own."""
    store = MemoryStore()
    await store.open()
    routing = AlertRouting(channels=(ChannelRoute("webhook", audiences=frozenset({"clinic"})),))  # type: ignore[arg-type]
    lead = make_alert(Audience.CLINIC, order="O1")
    repeat = make_alert(Audience.CLINIC, order="O2")
    assert await route_one(routing, lead, store) == ["webhook"]
    assert await route_one(routing, repeat, store) == []
    record = await store.desk.get(repeat.id)
    assert record is not None and (record.status, record.lead_id) == ("collapsed", lead.id)
    lead_record = await store.desk.get(lead.id)
    assert lead_record is not None and lead_record.repeat_count == 2


async def test_a_test_alert_gets_rows_only_on_test_channels() -> None:
    store = MemoryStore()
    await store.open()
    routing = AlertRouting(
        channels=(ChannelRoute("webhook"), ChannelRoute("hl7", test_alerts=True)),
    )
    assert await route_one(routing, make_alert(processing_id="T"), store) == ["hl7"]
    assert await route_one(routing, make_alert(patient="P2"), store) == ["hl7", "webhook"]


# ---------------------------------------------------------------- settings and composition


def test_settings_default_to_every_audience_and_location() -> None:
    for channel in (WebhookSettings(), Hl7OutboundSettings()):
        assert (channel.audiences, channel.locations) == ([], [])


def test_settings_read_audiences_and_strip_locations() -> None:
    webhook = WebhookSettings(audiences=["clinic", "serology"], locations=[" MYELOMA ", "infus"])
    assert webhook.audiences == [Audience.CLINIC, Audience.SEROLOGY]
    assert webhook.locations == ["MYELOMA", "infus"]


def test_an_unknown_audience_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        Hl7OutboundSettings(audiences=["nursing"])
    assert "blood_bank" in str(caught.value) and "flow_lab" in str(caught.value)


def test_an_empty_location_is_refused() -> None:
    """`[""]` would read as "alerts without a location" to one site and "all" to another."""
    with pytest.raises(ValidationError, match="empty"):
        WebhookSettings(locations=["4W", "  "])


def test_environment_overrides_restrict_a_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISGUARD_DELIVERY__WEBHOOK__AUDIENCES", '["clinic"]')
    monkeypatch.setenv("LISGUARD_DELIVERY__HL7__LOCATIONS", '["4W", "ONC"]')
    settings = Settings()
    assert settings.delivery.webhook.audiences == [Audience.CLINIC]
    assert settings.delivery.hl7.locations == ["4W", "ONC"]


def test_the_service_composes_each_channels_restriction_into_the_routing() -> None:
    settings = DeliverySettings(
        webhook=WebhookSettings(
            enabled=True,
            url="http://127.0.0.1:9/hook",
            audiences=[Audience.CLINIC],
            test_alerts=True,
        ),
        hl7=Hl7OutboundSettings(
            enabled=True, host="127.0.0.1", port=9, locations=["4W"], audiences=[]
        ),
        collapse_window_hours=2,
    )
    delivery = Delivery(MemoryStore(), settings)
    webhook, hl7 = delivery.routing.channels
    assert webhook == ChannelRoute("webhook", frozenset({Audience.CLINIC}), frozenset(), True)
    assert hl7 == ChannelRoute("hl7", frozenset(), frozenset({"4w"}), False)
    assert delivery.routing.collapse_window == timedelta(hours=2)
    assert [w.channel.name for w in delivery.workers] == ["webhook", "hl7"]
