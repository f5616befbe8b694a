"""Every source key the knowledge base or an alert cites is explained somewhere a reader finds
it: ../shared/DOMAIN.md, docs/ALERTS.md, or the header of the knowledge file that cites it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base

REPO = Path(__file__).resolve().parents[2]
DOMAIN = REPO.parent / "shared" / "DOMAIN.md"
RULE_MODULES = ("rules.py", "rules_ig.py")


def explained() -> str:
    texts = [(REPO / "docs" / "ALERTS.md").read_text()]
    for name in ("drugs.yaml", "tests.yaml"):
        text = (REPO / "config" / "knowledge" / name).read_text()
        texts.append(text.split("\n\n", 1)[0] + text)  # the header and its comments
    if DOMAIN.is_file():
        texts.append(DOMAIN.read_text())
    return "\n".join(texts).upper()


def rule_sources() -> set[str]:
    """Source keys in the rule modules: upper-case string literals inside list displays
    (`sources=[...]`, `sources += [...]`, `cited = [...]`)."""
    key = re.compile(r"[A-Z][A-Z0-9]*(?:[ -][A-Z0-9]+)*")
    found: set[str] = set()
    for name in RULE_MODULES:
        tree = ast.parse((REPO / "lisguard" / "domain" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.List):
                found |= {
                    c.value
                    for c in node.elts
                    if isinstance(c, ast.Constant)
                    and isinstance(c.value, str)
                    and key.fullmatch(c.value)
                }
    return found


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def test_every_cited_source_is_explained(kb: KnowledgeBase) -> None:
    text = explained()
    cited = set(rule_sources())
    for entry in (*kb.drugs.values(), *kb.tests.values()):
        cited |= set(entry.sources)
    seed = re.compile(r"SEED-(\d{3})")
    missing = []
    for key in sorted(cited):
        m = seed.fullmatch(key)
        if m is not None:
            if f"SEED {m.group(1)}" not in text and key not in text:
                missing.append(key)
        elif f"[{key.upper()}]" not in text:
            missing.append(key)
    assert not missing, missing
