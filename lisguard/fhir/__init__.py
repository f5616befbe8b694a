"""FHIR R4 for lisguard: a pure adapter, as lisguard.hl7v2 is for HL7 v2.

- `orders`: a CDS Hooks request's draft orders (a Bundle of MedicationRequest / ServiceRequest),
  its prefetched Patient and medication history, into lisguard.domain.facts records, so that a
  card comes from the same rules as an HL7 v2 alert;
- `resources`: alerts out as DetectedIssue, recommendations as the ServiceRequests a card
  suggests;
- `cards`: an alert as a CDS Hooks card;
- `codes`: the coding systems (the standard ones read, lisguard's own written).

Inbound resources are validated and outbound ones built with `fhir.resources` (its R4B models:
R4B changed none of the resources used here from R4, and R4 is what EHRs send).
"""
