"""docker/grafana/sealq.json and docker/prometheus/sealq-rules.yml name only series a running
worker's /metrics exports, with labels those series carry: a worker is run in memory, its
/metrics scraped over HTTP, and every query parsed as PromQL (promql-parser), so a renamed
metric or label fails here. The rules file also holds the README's example rules unchanged."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing.kms import FakeKMS, record_for, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import Message
from sealq.worker.http import HealthServer
from sealq.worker.pool import Worker
from sealq.worker.settings import WorkerSettings
from tests.unit.deploy_helpers import DOCKER, ROOT

DASHBOARD = DOCKER / "grafana" / "sealq.json"
RULES = DOCKER / "prometheus" / "sealq-rules.yml"
EXTERNAL = {"aws_sqs_approximate_number_of_messages_visible_average"}
"""Not sealq's: CloudWatch's queue depth through an exporter (the README's DLQ rule)."""
TARGET_LABELS = {"instance", "job", "pod", "namespace", "le"}
"""Added by Prometheus to every scraped series (and `le`, every histogram bucket's)."""
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


async def _scrape(tmp_path: Path) -> str:
    """A worker that handled, dead-lettered and met a KMS error, scraped once."""
    kms = FakeKMS()
    good = record_for(kms, ec.generate_private_key(ec.SECP256R1()), "p256-good")
    other = record_for(kms, ec.generate_private_key(ec.SECP256R1()), "p256-other")
    store = write_keyset(tmp_path / "keyset.json", good, other)
    queue, dlq = MemoryQueue("q"), MemoryQueue("dlq")
    for i in range(3):
        entry = build_entry(i, OutgoingMessage(b"ok"), good.sealing_key(), time.time())
        queue.put(entry.body, entry.attributes)
    queue.put("garbage", {"key-id": {"DataType": "String", "StringValue": "p256-good"}})

    async def handle(message: Message) -> None:
        return None

    settings = WorkerSettings(
        queue_url="q",
        dlq_url="dlq",
        keyset=str(store.location),
        handler="x:y",
        wait_time_s=1,
        shutdown_grace_s=2,
    )
    worker = Worker(settings, handle, sqs=MemorySQS(queue, dlq), kms=kms, keystore=store)
    server = HealthServer(worker, "127.0.0.1", 0)
    port = await server.start()
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 10
        while (
            worker.stats.handled < 3 or worker.stats.dead_lettered_total < 1
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        kms.failing = "DisabledException"
        entry = build_entry(9, OutgoingMessage(b"ok"), other.sealing_key(), time.time())
        queue.put(entry.body, entry.attributes)
        while not worker.keys.kms_errors and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}/metrics"
        return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        worker.stop()
        await task
        await server.stop()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Series name -> label names, as the worker's /metrics shows them (families without a
    sample yet are named from their type: counter `x` is `x_total`, histograms add
    `_bucket`, `_sum` and `_count`)."""
    text = asyncio.run(_scrape(tmp_path_factory.mktemp("metrics")))
    series: dict[str, set[str]] = {}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes[family.type]:
            series.setdefault(family.name + suffix, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def selectors(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) that a PromQL expression selects or groups by."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()
    labels: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
            labels.update(m.name for m in node.matchers.matchers)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names, labels


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def rules(text: str) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(text)
    return {r["alert"]: r for group in document["groups"] for r in group["rules"]}


def readme_rules() -> dict[str, dict[str, Any]]:
    readme = (ROOT / "README.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "alert:" in b]
    return rules(block)


def _check(expr: str, exported: dict[str, set[str]]) -> None:
    names, labels = selectors(expr)
    assert names, expr
    unknown = names - set(exported) - EXTERNAL
    assert not unknown, f"{expr}: not exported by the worker: {sorted(unknown)}"
    if names & EXTERNAL:
        return
    carried = set().union(*(exported.get(n, set()) for n in names))
    assert labels - TARGET_LABELS <= carried, f"{expr}: labels {sorted(labels - carried)} not on {names}"


@pytest.mark.parametrize("expr", dashboard_queries())
def test_dashboard_queries_name_exported_series(expr: str, exported: dict[str, set[str]]) -> None:
    _check(expr, exported)


@pytest.mark.parametrize("alert", sorted(rules(RULES.read_text())))
def test_rules_name_exported_series(alert: str, exported: dict[str, set[str]]) -> None:
    _check(rules(RULES.read_text())[alert]["expr"], exported)


def test_the_check_is_live(exported: dict[str, set[str]]) -> None:
    """A renamed metric or label fails it; the scrape saw the labelled series."""
    assert {"reason", "kid"} <= exported["sealq_dead_lettered_total"]
    assert "code" in exported["sealq_kms_errors_total"]
    with pytest.raises(AssertionError, match="not exported"):
        _check("sum(rate(sealq_handled[5m]))", exported)
    with pytest.raises(AssertionError, match="labels"):
        _check("sum by (client) (rate(sealq_dead_lettered_total[5m]))", exported)


def test_the_dashboard_shows_what_operators_need() -> None:
    names = set().union(*(selectors(q)[0] for q in dashboard_queries()))
    assert {
        "sealq_handled_total", "sealq_dead_lettered_total", "sealq_in_flight", "sealq_handler_seconds_bucket",
        "sealq_poll_seconds_bucket", "sealq_kms_decrypt_calls_total", "sealq_pollers",
    } <= names  # fmt: skip
    by_reason_and_kid = [q for q in dashboard_queries() if "sealq_dead_lettered_total" in q]
    assert any({"reason", "kid"} <= selectors(q)[1] for q in by_reason_and_kid)
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)


def test_the_rules_file_holds_the_readmes_rules_unchanged() -> None:
    shipped = rules(RULES.read_text())
    for alert, rule in readme_rules().items():
        assert alert in shipped
        assert " ".join(shipped[alert]["expr"].split()) == " ".join(rule["expr"].split())
        assert shipped[alert].get("for") == rule.get("for")
    for rule in shipped.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert "summary" in rule["annotations"]
