"""Unbounded metrics (security review finding 5): MSH-9 as written was a Prometheus label value,
and every series lives as long as the process. 3,000 made-up types grew /metrics from 7.6 kB to
12.5 MB. Label values now come from a bounded set: known families, then "other", and a hard cap
on the series even for known families with made-up triggers."""

from __future__ import annotations

import itertools
import string

import aiohttp

from lisguard.services import IngestResult
from lisguard.transport.metrics import MAX_TYPE_SERIES, Metrics, type_label
from lisguard.transport.mllp import MllpClient, msa_code
from tests.conftest import ServiceFactory

MESSAGE = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||{mtype}|{cid}|P|2.5.1\r"
    "PID|1||MRN1^^^HOSP^MR||DOE^JANE\r"
)
LIMIT = 50_000


def made_up_types() -> list[str]:
    """1,500 local families (ZZ1^Q01 ...) and 1,500 made-up triggers of a known family."""
    chars = string.digits + string.ascii_uppercase
    local = [f"Z{a}{b}^{c}01" for c, a, b in itertools.product("QRS", chars, chars)][:1500]
    triggers = [f"ORM^{a}{n:02d}" for a in string.ascii_uppercase for n in range(58)][:1500]
    return local + triggers


async def test_made_up_message_types_keep_metrics_small(service_factory: ServiceFactory) -> None:
    service = await service_factory()
    assert service.mllp_port and service.http_port
    types = made_up_types()
    assert len(set(types)) == 3000
    async with MllpClient("127.0.0.1", service.mllp_port, timeout=30) as client:
        for i, mtype in enumerate(types):
            ack = await client.send(MESSAGE.format(mtype=mtype, cid=f"L{i}").encode())
            assert msa_code(ack) in ("AA", "AE", "AR"), mtype
        ack = await client.send(MESSAGE.format(mtype="ORU^R01", cid="REAL").encode())
        assert msa_code(ack) == "AA"
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{service.http_port}/metrics") as resp,
    ):
        assert resp.status == 200
        body = await resp.text()
    assert len(body.encode()) < LIMIT, len(body.encode())
    assert 'type="other"' in body
    assert 'type="ORU^R01"' in body  # real types are still told apart
    assert "ZZ1" not in body and "ZA0" not in body
    series = [line for line in body.splitlines() if line.startswith("lisguard_messages_total{")]
    assert len(series) <= MAX_TYPE_SERIES + 12  # + "other" per outcome and transport


def test_type_labels() -> None:
    assert type_label("ORU^R01") == "ORU^R01"
    assert type_label("ORU^R01^ORU_R01") == "ORU^R01"
    assert type_label("RAS^O17") == "RAS^O17"
    assert type_label("ADT") == "ADT"
    assert type_label("ADT^Q99") == "ADT"  # not one of its trigger events: the family alone
    assert type_label("ZZ1^Q01") == "other"
    assert type_label("(not shown: not a code)") == "other"
    assert type_label("") == "unknown"


def test_the_cap_holds_for_known_types() -> None:
    metrics = Metrics()
    outcomes = ("accepted", "ignored", "duplicate", "rejected", "unavailable")
    for n, outcome, transport in itertools.product(range(1, 63), outcomes, ("mllp", "http")):
        result = IngestResult([], outcome, message_type=f"ADT^A{n:02d}")
        metrics.observe(result, transport, 0)
    text = metrics.render().decode()
    series = [line for line in text.splitlines() if line.startswith("lisguard_messages_total{")]
    assert sum('type="ADT^' in line for line in series) == MAX_TYPE_SERIES
    assert sum('type="ADT"' in line for line in series) == len(outcomes) * 2
    total = sum(float(line.rsplit(" ", 1)[1]) for line in series)
    assert total == 62 * len(outcomes) * 2  # nothing is lost, only counted coarser
