"""One patient, however the feeds name them: which PID-3 repetition is the patient, and under
which key.

A site says which assigning authorities (PID-3.4) are one register, which identifier types
(PID-3.5) carry the MRN, and what a bare identifier with no authority belongs to (an infusion
centre's `123456` against the lab's `123456^^^HOSP^MR`): `identity:` in a site file
(config/site.example.yaml). Without a site setting, identifiers are kept as written, the MR-typed
repetition preferred: exactly what lisguard did before.

Merged (retired) identifiers and linked records are patient state, not identity:
lisguard.domain.engine follows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from lisguard.domain.facts import PatientId
from lisguard.domain.kb_models import IdentityRules

# PID-3.5 types (HL7 table 0203) that never name the patient's record: an account or visit
# number, a national or provider number. Skipped unless nothing else is there.
NOT_THE_RECORD = frozenset({"AN", "VN", "SS", "DL", "PPN", "NPI", "PRN", "EI", "BA"})


class Identifier(NamedTuple):
    """One PID-3 (or MRG-1) repetition as written: CX.1, CX.4.1, CX.4.2, CX.5."""

    id: str
    namespace: str = ""
    universal_id: str = ""
    type: str = ""


class PatientIdentity:
    """The site's identity rules, compiled once per knowledge base."""

    def __init__(self, rules: IdentityRules | None = None) -> None:
        rules = rules or IdentityRules()
        self.rules = rules
        self._canonical = {
            name.strip().upper(): group[0].strip() for group in rules.authorities for name in group
        }
        self._types = [t.strip().upper() for t in rules.identifier_types]
        self._bare = rules.bare_ids.strip()
        self._strip_zeros = rules.strip_leading_zeros

    def patient(self, reps: Iterable[Identifier]) -> PatientId | None:
        """The repetition that names the patient's record, as a normalised PatientId."""
        usable = [r for r in reps if r.id.strip()]
        if not usable:
            return None
        for wanted in self._types:
            for rep in usable:
                if rep.type.strip().upper() == wanted:
                    return self.normalise(rep)
        for rep in usable:
            if rep.type.strip().upper() not in NOT_THE_RECORD:
                return self.normalise(rep)
        return self.normalise(usable[0])

    def normalise(self, rep: Identifier) -> PatientId:
        ident = rep.id.strip()
        if self._strip_zeros:
            ident = ident.lstrip("0") or ident
        namespace, universal = rep.namespace.strip(), rep.universal_id.strip()
        authority = ""
        for name in (namespace, universal):
            if name:
                authority = self._canonical.get(name.upper(), "")
                if authority:
                    break
        if not authority:
            authority = namespace or universal or self._bare
        return PatientId(ident, authority)
