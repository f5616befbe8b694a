"""The one table a benchmark run prints (and stores in its JSON): lisguard, peer, ratio, target."""

from __future__ import annotations

from typing import Any


def _ratio(a: float, b: float | None) -> float | None:
    return round(a / b, 2) if b else None


def summarise(r: dict[str, Any]) -> list[dict[str, Any]]:
    servers, growth = r["servers"], r["growth"]
    lg, hl7, raw = servers["lisguard"], servers["python_hl7"], servers["raw"]
    rows: list[dict[str, Any]] = []

    def row(measure: str, ours: float, theirs: float | None, target: str, met: bool) -> None:
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
    return rows


def table(r: dict[str, Any]) -> str:
    head = f"{'measure':<46} {'lisguard':>10} {'peer':>10} {'ratio':>7}  {'target':<10} met"
    lines = [head, "-" * len(head)]
    for row in r["summary"]:
        peer = "" if row["peer"] is None else f"{row['peer']:>10,.1f}"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:>6.2f}x"
        lines.append(
            f"{row['measure']:<46} {row['lisguard']:>10,.1f} {peer:>10} {ratio:>7}  "
            f"{row['target']:<10} {'yes' if row['met'] else 'NO'}"
        )
    servers = r["servers"]
    lines.append("")
    lines.append("server CPU per message (us; steadier than rates on a shared machine):")
    for name, figures in servers.items():
        cpu = "  ".join(
            f"{c} conn {figures[f'conn{c}']['server_cpu_us_per_msg']:>7,.1f}" for c in (1, 8)
        )
        lines.append(f"  {name:<12} {cpu}")
    if "lisguard_before" in servers:
        lines.append("lisguard now against the baseline tree (BENCH_BASELINE), same run:")
        for c in (1, 8):
            now = servers["lisguard"][f"conn{c}"]["msg_per_s"]
            then = servers["lisguard_before"][f"conn{c}"]["msg_per_s"]
            lines.append(f"  {c} conn: {then:,.0f} -> {now:,.0f} msg/s ({now / then:.2f}x)")
        if "before" in r["check"]:
            then, now = r["check"]["before"]["msg_per_s"], r["check"]["msg_per_s"]
            lines.append(f"  check: {then:,.0f} -> {now:,.0f} msg/s ({now / then:.2f}x)")
            if "peak_rss_mb" in r["check"]["before"]:
                was, rss = r["check"]["before"]["peak_rss_mb"], r["check"]["peak_rss_mb"]
                lines.append(f"  check peak RSS: {was:,.0f} -> {rss:,.0f} MB")
    lat = servers["lisguard"]["offered_1000"]
    lines.append(
        f"lisguard at 1,000 msg/s offered: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms,"
        f" max {lat['max_ms']:.1f} ms; check: {r['check']['wall_s']} s wall for"
        f" {r['check']['messages']:,} messages ({r['check']['startup_s']} s of it start-up)"
    )
    return "\n".join(lines)
