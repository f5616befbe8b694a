"""lisguard: anti-CD38 interference alerts from HL7 v2 feeds."""
