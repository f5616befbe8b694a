"""Routing inside a PostgreSQL unit of work without round trips of its own (migration 0012).

The unit's alert write answers, for every alert it inserted, what routing reads next: the
snoozes in force for the alert's patient and rule, and that pair's open leads, locked FOR UPDATE
until COMMIT as the separate read locked them. Routing's writes (hold back, collapse, queue on
the outbox) are kept here and go with the unit's next write, its audit events; the answers are
kept in step with them, so that the second alert of a message sees the first as the database
would. Any other statement forgets the answers (PostgresTransaction._run): the desk then reads
the database, after the buffered writes are sent (SqlPart._exec flushes first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class RoutingView:
    """Routing's read of one patient and rule: the snooze in force (a snoozes row) and the open
    leads, newest first (lisguard_lead rows, desk_reads.ALERT_COLUMNS first), each with its
    repeat count as this unit leaves it."""

    at: datetime  # the snooze is the one in force then
    snooze: Any | None
    leads: list[tuple[Any, int]]


class RoutingBuffer:
    def __init__(self) -> None:
        self._at: datetime | None = None  # when the answered alerts were raised
        self._snoozes: dict[tuple[str, str], Any] = {}
        self._leads: dict[tuple[str, str], list[Any]] = {}
        self._counts: dict[str, int] = {}  # lead id: repeat count with the buffered collapses
        self._gone: set[str] = set()  # answered leads that lead no longer (held back, folded)
        self._holds: list[tuple[str, int]] = []
        self._folds: list[tuple[str, str, datetime]] = []
        self._outbox: list[tuple[str, str, datetime]] = []

    def learn(
        self,
        at: datetime,
        pairs: Sequence[tuple[str, str]],
        snoozes: Sequence[Any] | None,
        leads: Sequence[Any] | None,
    ) -> None:
        """What the alert write answered for the inserted alerts' (patient, rule) pairs."""
        self.forget()
        self._at = at
        for pair in pairs:
            self._leads.setdefault(pair, [])
        for row in snoozes or ():  # the one expiring last, as find_snooze orders them
            pair = (row[1], row[2])
            kept = self._snoozes.get(pair)
            if kept is None or row[6] > kept[6]:
                self._snoozes[pair] = row
        for row in leads or ():  # newest first already
            self._leads.setdefault((row[17], row[18]), []).append(row)
            self._counts[row[4]] = int(row[6])

    def forget(self) -> None:
        self._at = None
        self._snoozes, self._leads, self._counts, self._gone = {}, {}, {}, set()

    def view(self, patient_key: str, rule: str) -> RoutingView | None:
        leads = self._leads.get((patient_key, rule))
        if leads is None or self._at is None:
            return None  # not answered: the desk reads the database
        kept = [(r, self._counts[r[4]]) for r in leads if r[4] not in self._gone]
        return RoutingView(self._at, self._snoozes.get((patient_key, rule)), kept)

    def hold_back(self, alert_id: str, snooze_id: int) -> None:
        self._holds.append((alert_id, snooze_id))
        self._gone.add(alert_id)

    def collapse(self, alert_id: str, lead_id: str, at: datetime) -> int | None:
        """The lead's count after this repeat, or None when the lead was not answered here
        (its count is the database's to give)."""
        if lead_id not in self._counts:
            return None
        self._folds.append((alert_id, lead_id, at))
        self._gone.add(alert_id)
        self._counts[lead_id] += 1
        return self._counts[lead_id]

    def add_outbox(self, alert_id: str, channels: Sequence[str], at: datetime) -> None:
        self._outbox.extend((alert_id, channel, at) for channel in channels)

    @property
    def pending(self) -> bool:
        return bool(self._holds or self._folds or self._outbox)

    def take(self) -> tuple[list[Any], ...]:
        """The buffered writes as lisguard_write's eight routing columns; emptied."""
        if not self.pending:
            return ([], [], [], [], [], [], [], [])
        holds, folds, outbox = self._holds, self._folds, self._outbox
        self._holds, self._folds, self._outbox = [], [], []
        return (
            [h[0] for h in holds],
            [h[1] for h in holds],
            [f[0] for f in folds],
            [f[1] for f in folds],
            [f[2] for f in folds],
            [o[0] for o in outbox],
            [o[1] for o in outbox],
            [o[2] for o in outbox],
        )
