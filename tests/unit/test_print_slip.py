"""The knowledge base version the slip, the report and the API show
(lisguard.domain.knowledge_holder.knowledge_fingerprint): the same facts give the same value in
every process, whatever the hash seed; a site override changes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lisguard.domain.knowledge import load_knowledge_base
from lisguard.domain.knowledge_holder import knowledge_fingerprint as kb_fingerprint

PRINT = (
    "from lisguard.domain.knowledge import load_knowledge_base as k; "
    "from lisguard.domain.knowledge_holder import knowledge_fingerprint as f; print(f(k()))"
)


def fingerprint_in_a_process(seed: str) -> str:
    env = os.environ | {"PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", PRINT], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_same_facts_print_the_same_version_in_every_process() -> None:
    here = kb_fingerprint(load_knowledge_base())
    assert len(here) == 12 and int(here, 16) >= 0
    # a drug's effects are a set: its order must not reach the digest
    assert {fingerprint_in_a_process(seed) for seed in ("1", "2", "3")} == {here}


def test_a_site_override_changes_the_version(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("default_window_months: 12\n", encoding="utf-8")
    base = kb_fingerprint(load_knowledge_base())
    assert kb_fingerprint(load_knowledge_base([site])) != base
    assert kb_fingerprint(load_knowledge_base()) == base
