"""The one table a benchmark run prints (and stores in its JSON): lisguard, peer, ratio, target.

Rows with target "-" inform (a ratio against a durable peer, round trips, replicas): `met` is
None for them. A run without a part (BENCH_FEEDS, BENCH_PG=0, an older JSON) lacks its rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = Callable[[str, float, float | None, str, bool | None], None]


def _ratio(a: float, b: float | None) -> float | None:
    return round(a / b, 2) if b else None


def _store_rows(row: Row, feed: str, servers: dict[str, Any]) -> None:
    """lisguard on each store against the peers of the same feed and run."""
    hl7 = servers["python_hl7"]
    for name, store in (("lisguard", "SQLite FULL"), ("lisguard_pg", "PG")):
        if name not in servers or (feed == "mixed" and name == "lisguard"):
            continue  # the mixed feed's SQLite rows are the original ones (summarise)
        ours_fig = servers[name]
        for c in (1, 8):
            ours, theirs = ours_fig[f"conn{c}"]["msg_per_s"], hl7[f"conn{c}"]["msg_per_s"]
            row(
                f"{feed}: {store}, {c} conn, vs python-hl7",
                ours,
                theirs,
                ">= 2.0x",
                ours >= 2 * theirs,
            )
        peer = "durable_sqlite" if name == "lisguard" else "durable_pg"
        if peer in servers:
            for c in (1, 8):
                ours, theirs = (
                    ours_fig[f"conn{c}"]["msg_per_s"],
                    servers[peer][f"conn{c}"]["msg_per_s"],
                )
                row(
                    f"{feed}: {store}, {c} conn, vs durable {peer[8:]} peer",
                    ours,
                    theirs,
                    "-",
                    None,
                )
        if "offered_1000" in ours_fig and not (feed == "mixed" and name == "lisguard"):
            p99 = ours_fig["offered_1000"]["p99_ms"]
            row(f"{feed}: {store}, p99 ACK ms at 1,000 msg/s", p99, None, "<= 10 ms", p99 <= 10)


def _pg_rows(row: Row, feed: str, part: dict[str, Any]) -> None:
    if "round_trips" in part:
        rt = part["round_trips"]["round_trips_per_msg"]
        row(f"{feed}: PG round trips per message, 1 conn", rt, None, "-", None)
    if "replicas" in part:
        rep = part["replicas"]
        both, one = (
            rep["replica_pair"]["conn8"]["msg_per_s"],
            rep["replica_one"]["conn8"]["msg_per_s"],
        )
        row(f"{feed}: 2 replicas (4+4 conn) vs 1 (8 conn), PG", both, one, "-", None)


def summarise(r: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(measure: str, ours: float, theirs: float | None, target: str, met: bool | None) -> None:
        rows.append(
            {
                "measure": measure,
                "lisguard": ours,
                "peer": theirs,
                "ratio": _ratio(ours, theirs),
                "target": target,
                "met": met,
            }
        )

    if "servers" in r:
        _mixed_rows(row, r)
        _store_rows(row, "mixed", r["servers"])
        _pg_rows(row, "mixed", r.get("mixed", {}))
    relevant = r.get("relevant", {})
    if "servers" in relevant:
        _store_rows(row, "relevant", relevant["servers"])
        _pg_rows(row, "relevant", relevant)
    return rows


def _mixed_rows(row: Row, r: dict[str, Any]) -> None:
    """The issue's targets on the mixed feed, SQLite, as they were first set."""
    servers, growth = r["servers"], r["growth"]
    lg, hl7, raw = servers["lisguard"], servers["python_hl7"], servers["raw"]
    for c in (1, 8):
        ours, theirs = lg[f"conn{c}"]["msg_per_s"], hl7[f"conn{c}"]["msg_per_s"]
        row(f"msg/s, {c} conn, vs python-hl7 ACK-only", ours, theirs, ">= 2.0x", ours >= 2 * theirs)
    normal = servers.get("lisguard_normal")
    if normal is not None:  # synchronous=NORMAL: survives a crash, not a power cut
        for c in (1, 8):
            ours, theirs = normal[f"conn{c}"]["msg_per_s"], hl7[f"conn{c}"]["msg_per_s"]
            row(
                f"msg/s, {c} conn, NORMAL, vs python-hl7",
                ours,
                theirs,
                ">= 2.0x",
                ours >= 2 * theirs,
            )
    if "disk" in r:  # the ceiling of any power-cut-durable send-and-wait server on this disk
        disk = r["disk"]["fdatasync_per_s"]
        ours = lg["conn1"]["msg_per_s"]
        row("msg/s, 1 conn, vs the disk's fdatasync/s", ours, disk, "(ceiling)", ours <= disk)
    for c in (1, 8):
        ours, theirs = lg[f"conn{c}"]["msg_per_s"], raw[f"conn{c}"]["msg_per_s"]
        row(f"msg/s, {c} conn, vs raw fixed ACK", ours, theirs, ">= 0.15x", ours >= 0.15 * theirs)
    ours, theirs = lg["conn1"]["msg_per_s"], r["naive_hl7apy"]["msg_per_s"]
    row("msg/s, 1 conn, vs naive hl7apy pipeline", ours, theirs, ">= 30x", ours >= 30 * theirs)
    lat = lg["offered_1000"]
    row("p99 ACK ms at 1,000 msg/s offered", lat["p99_ms"], None, "<= 10 ms", lat["p99_ms"] <= 10)
    check = r["check"]["msg_per_s"]
    row("lisguard check msg/s, one CPU", check, None, ">= 20,000", check >= 20_000)
    rss = lg["peak_rss_mb"]
    row("peak RSS MB, lisguard serve", rss, None, "<= 200", rss <= 200)
    if "peak_rss_mb" in r["check"]:  # runs from before it was measured lack it
        rss = r["check"]["peak_rss_mb"]
        row("peak RSS MB, lisguard check (100k)", rss, None, "<= 200", rss <= 200)
    stored = sorted((k for k in growth if k.startswith("stored_")), key=len)
    small, large = growth[stored[0]]["conn8"]["msg_per_s"], growth[stored[1]]["conn8"]["msg_per_s"]
    row(f"msg/s 8 conn, {stored[1]} vs {stored[0]}", large, small, ">= 0.8x", large >= 0.8 * small)
    few = growth["patients_1k"]["conn8"]["msg_per_s"]
    many = growth["patients_100k"]["conn8"]["msg_per_s"]
    row("msg/s 8 conn, patients_100k vs patients_1k", many, few, ">= 0.8x", many >= 0.8 * few)


def _met(met: bool | None) -> str:
    return "" if met is None else "yes" if met else "NO"


def table(r: dict[str, Any]) -> str:
    head = f"{'measure':<54} {'lisguard':>10} {'peer':>10} {'ratio':>7}  {'target':<10} met"
    lines = [head, "-" * len(head)]
    for row in r["summary"]:
        peer = "" if row["peer"] is None else f"{row['peer']:>10,.1f}"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:>6.2f}x"
        lines.append(
            f"{row['measure']:<54} {row['lisguard']:>10,.1f} {peer:>10} {ratio:>7}  "
            f"{row['target']:<10} {_met(row['met'])}"
        )
    note = r.get("settings", {}).get("postgresql", "on")
    if note != "on":  # say it where the rows would be, not only in the log
        lines.append(f"PostgreSQL rows: {note}")
    lines += _shares(r)
    for feed, servers in (
        ("mixed", r.get("servers")),
        ("relevant", r.get("relevant", {}).get("servers")),
    ):
        if servers:
            lines.append("")
            lines.append(f"server CPU per message, {feed} feed (us; steadier than rates):")
            for name, figures in servers.items():
                cpu = "  ".join(
                    f"{c} conn {figures[f'conn{c}']['server_cpu_us_per_msg']:>7,.1f}"
                    for c in (1, 8)
                )
                lines.append(f"  {name:<15} {cpu}")
    lines += _details(r)
    return "\n".join(lines)


def _shares(r: dict[str, Any]) -> list[str]:
    out = []
    for feed in ("mixed", "relevant"):
        share = r.get(feed, {}).get("share")
        if share:
            out.append(
                f"{feed} feed: {share['touch_state']:.0%} of messages load patient state, "
                f"{share['raise_alert']:.0%} raise an alert, {share['change_state']:.0%} change "
                f"state, {share['alert_or_state']:.0%} either (first {share['messages']:,})"
            )
    return ["", *out] if out else []


def _details(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    servers = r.get("servers", {})
    if "lisguard_before" in servers:
        lines.append("lisguard now against the baseline tree (BENCH_BASELINE), same run:")
        for c in (1, 8):
            now = servers["lisguard"][f"conn{c}"]["msg_per_s"]
            then = servers["lisguard_before"][f"conn{c}"]["msg_per_s"]
            lines.append(f"  {c} conn: {then:,.0f} -> {now:,.0f} msg/s ({now / then:.2f}x)")
        if "before" in r.get("check", {}):
            then, now = r["check"]["before"]["msg_per_s"], r["check"]["msg_per_s"]
            lines.append(f"  check: {then:,.0f} -> {now:,.0f} msg/s ({now / then:.2f}x)")
            if "peak_rss_mb" in r["check"]["before"]:
                was, rss = r["check"]["before"]["peak_rss_mb"], r["check"]["peak_rss_mb"]
                lines.append(f"  check peak RSS: {was:,.0f} -> {rss:,.0f} MB")
    for feed, figures in (
        ("mixed", servers),
        ("relevant", r.get("relevant", {}).get("servers", {})),
    ):
        for name in ("lisguard", "lisguard_pg"):
            lat = figures.get(name, {}).get("offered_1000")
            if lat:
                kept = (
                    f", {lat['messages']:,} of {lat['offered']:,} ACKed" if "offered" in lat else ""
                )
                lines.append(
                    f"{name} at 1,000 msg/s offered, {feed} feed: p50 {lat['p50_ms']:.2f} ms,"
                    f" p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.1f} ms{kept}"
                )
    for feed in ("mixed", "relevant"):
        part = r.get(feed, {})
        if "round_trips" in part:
            rt = part["round_trips"]
            lines.append(
                f"PG round trips, {feed} feed, 1 conn: {rt['round_trips_per_msg']:.2f} a message"
                f" ({rt['messages']:,} messages); idle server {rt['idle_round_trips_per_s']:.1f}/s"
            )
        if "replicas" in part:
            checked = part["replicas"]["checked"]
            lines.append(
                f"replicas, {feed} feed: no double alert in {checked['alerts']:,} alerts and"
                f" {checked['messages']:,} messages on the shared schema"
            )
    if "check" in r:
        lines.append(
            f"check: {r['check']['wall_s']} s wall for {r['check']['messages']:,} messages"
            f" ({r['check']['startup_s']} s of it start-up)"
        )
    return ["", *lines] if lines else []
