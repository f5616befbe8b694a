"""An alert as a CDS Hooks 2.0 card (cds-hooks.hl7.org, "CDS Service Response").

The alert comes from lisguard.domain.engine run over the draft orders, so a card says exactly
what the HL7 v2 alert for the same order would: same rule, same recommendation codes, same text.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from lisguard.domain.alerts import RECOMMENDATION_TEXT, Alert, Recommendation, Severity
from lisguard.fhir.codes import OVERRIDE_REASON_SYSTEM, RULE_SYSTEM
from lisguard.fhir.resources import SUGGESTION_LABELS, service_request, suggested_tests

R = Recommendation
SUMMARY_MAX = 139  # the spec: "<140 characters"
INDICATOR = {Severity.HIGH: "critical", Severity.MEDIUM: "warning", Severity.LOW: "info"}

# why a clinician goes on without the advice (offered on critical and warning cards; the
# feedback names the one chosen, lisguard.web.cds_hooks records it)
OVERRIDE_REASONS: tuple[dict[str, str], ...] = (
    {
        "system": OVERRIDE_REASON_SYSTEM,
        "code": "already-done",
        "display": "Already done, ordered or on file elsewhere",
    },
    {
        "system": OVERRIDE_REASON_SYSTEM,
        "code": "not-on-therapy",
        "display": "Patient is not on (or starting) this therapy",
    },
    {
        "system": OVERRIDE_REASON_SYSTEM,
        "code": "emergency",
        "display": "Emergency: no time for the work-up",
    },
    {
        "system": OVERRIDE_REASON_SYSTEM,
        "code": "lab-informed",
        "display": "The laboratory already knows",
    },
)

# a few words for each recommendation: the summary lists them after the rule's title
SHORT: dict[Recommendation, str] = {
    R.BASELINE_TYPE_AND_SCREEN: "type & screen",
    R.PRETREATMENT_PHENOTYPE: "extended RBC phenotype/genotype",
    R.HBV_SCREEN_BEFORE_FIRST_DOSE: "HBV serology",
    R.DTT_TREATED_REAGENT_CELLS: "DTT-treated cells (allow extra time)",
    R.KELL_NEGATIVE_UNITS: "K-negative units",
    R.PHENOTYPE_MATCHED_UNITS: "antigen-matched units",
    R.DRUG_SPECIFIC_IFE_REFLEX: "drug-specific IFE reflex",
    R.MASS_SPEC_MPROTEIN: "mass spectrometry",
    R.CD38_INDEPENDENT_GATING: "CD38-independent gating",
    R.CHECK_ANTI_CD38_HISTORY: "check anti-CD38 history",
    R.ANTI_CD47_WORKUP: "anti-CD47 workup",
    R.CD38_EPITOPE_MASKED: "CD38 epitope masked",
    R.PASSIVE_ANTIBODY_FROM_IG: "antibodies may be passive (IG)",
    R.PRIMARY_IVIG_PROPHYLAXIS: "consider IVIG prophylaxis",
    R.IVIG_REPLACEMENT_REVIEW: "review IgG replacement",
    R.IGG_INCLUDES_PARAPROTEIN: "IgG includes paraprotein",
    R.POSITIVE_DAT_MAY_BE_THERAPY: "DAT may be the drug",
}
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|])")
UNMATCHED = (
    "_lisguard could not match this patient to its records (the EHR sent no identifier"
    " lisguard keys patients by): judged on the orders in this request alone._"
)
NOTHING_KEPT = (
    "_Advice at order entry: lisguard records nothing from a draft order; it learns the order"
    " when the laboratory's feed sends it._"
)


def summary(alert: Alert, title: str) -> str:
    words = ", ".join(SHORT.get(r, r.value) for r in alert.recommendations)
    text = f"{title}: {words}" if words else title
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def detail(alert: Alert, *, matched: bool = True) -> str:
    lines = [_escape(alert.text), ""]
    if alert.recommendations:
        lines.append("**What to do**")
        lines += [
            f"- **{r.value}**: {_escape(RECOMMENDATION_TEXT.get(r, ''))}"
            for r in alert.recommendations
        ]
        lines.append("")
    if alert.sources:
        lines += [f"Sources: {_escape(', '.join(alert.sources))}", ""]
    if not matched:
        lines += [UNMATCHED, ""]
    lines.append(NOTHING_KEPT)
    return "\n".join(lines)


def card(
    alert: Alert,
    *,
    title: str,
    source_url: str,
    patient_ref: str,
    matched: bool = True,
    hbv_markers: Sequence[str] = ("hbsag", "anti_hbc"),
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> dict[str, Any]:
    """The card for one alert; suggestions create the orders its recommendations ask for."""
    indicator = INDICATOR[alert.severity]
    body: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": summary(alert, title),
        "detail": detail(alert, matched=matched),
        "indicator": indicator,
        "source": {
            "label": "lisguard",
            "url": source_url,
            "topic": {"system": RULE_SYSTEM, "code": alert.rule.value, "display": title},
        },
    }
    suggestions = []
    for rec in alert.recommendations:
        tests = suggested_tests(rec, hbv_markers)
        if not tests:
            continue
        actions = [
            {
                "type": "create",
                "description": f"Order {t.text}",
                "resource": service_request(t, rec, patient_ref),
            }
            for t in tests
        ]
        label = SUGGESTION_LABELS.get(rec, rec.value)
        suggestions.append(
            {"label": label, "uuid": new_uuid(), "isRecommended": True, "actions": actions}
        )
    if suggestions:
        body["suggestions"] = suggestions
        body["selectionBehavior"] = "any"  # required with suggestions: take none, some or all
    if indicator in ("critical", "warning"):
        body["overrideReasons"] = [dict(r) for r in OVERRIDE_REASONS]
    return body


def _escape(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)
