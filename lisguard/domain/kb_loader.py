"""Reading the knowledge base files and applying site files on top.

Base files (config/knowledge/): drugs.yaml, tests.yaml, interpretation.yaml.

A site file (see config/site.example.yaml) is one YAML mapping with any of:

- ``default_window_months``: replaces ours.
- ``drugs``: a list of entries, each with an ``id``. An existing id is UPDATED: only the keys the
  entry gives change, a given list replaces ours, except ``local_codes`` and
  ``context_aliases``, which are ADDED to ours.
  A new id adds a drug (every required key must then be given). ``enabled: false`` disables one.
- ``tests``: the same, by id; ``local_codes``, ``loinc``, ``name_patterns`` and
  ``exclude_patterns`` are ADDED to ours, every other key replaces.
- ``interpretation``: the structure of interpretation.yaml, every list ADDED to ours
  (``antigens.K: [...]`` adds symbols for K), scalars replaced.
- ``identity``: which identifiers name one patient (lisguard.domain.identity); each key given
  replaces ours (a later site file's key replaces an earlier one's).
- ``immunoglobulin``: the immunoglobulin-therapy rules' switches, windows and IgG threshold
  (kb_models.ImmunoglobulinRules); each key given replaces ours.

Any problem raises KnowledgeBaseError naming the file and the key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lisguard.domain.drugs import ndc_key
from lisguard.domain.kb_models import (
    Drug,
    DrugsFile,
    IdentityRules,
    ImmunoglobulinRules,
    InterpretationFile,
    TestDefinition,
    TestsFile,
)

BASE_FILES = ("drugs.yaml", "tests.yaml", "interpretation.yaml")
ADDITIVE = {
    "drugs": frozenset({"local_codes", "context_aliases"}),
    "tests": frozenset({"local_codes", "loinc", "name_patterns", "exclude_patterns"}),
}
SITE_KEYS = frozenset(
    {"default_window_months", "drugs", "tests", "interpretation", "identity", "immunoglobulin"}
)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", Drug, TestDefinition)


class KnowledgeBaseError(Exception):
    """A knowledge base or site file is missing, unreadable or invalid."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KnowledgeBaseError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise KnowledgeBaseError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KnowledgeBaseError(f"{path}: the file must be a mapping (key: value), not a list")
    return data


def location(loc: Sequence[int | str], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "enum":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{err.get('input')!r} is not one of {expected}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def validation_error(path: Path, exc: ValidationError, prefix: str = "") -> KnowledgeBaseError:
    lines = [f"{path}: {location(e['loc'], prefix)}: {_message(e)}" for e in exc.errors()]
    return KnowledgeBaseError("\n".join(lines))


def _validate(model: type[M], data: Any, path: Path, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(path, exc, prefix) from None


def _unique(records: Sequence[R], path: Path, key: str) -> dict[str, R]:
    out: dict[str, R] = {}
    first: dict[str, int] = {}
    for i, record in enumerate(records):
        if record.id in out:
            also = f"{key}[{first[record.id]}]"
            raise KnowledgeBaseError(
                f"{path}: {key}[{i}].id: duplicate id {record.id!r} (also {also})"
            )
        out[record.id] = record
        first[record.id] = i
    return out


class Loaded:
    """The validated content, before matchers are compiled."""

    def __init__(
        self,
        default_window_months: int,
        drugs: dict[str, Drug],
        tests: dict[str, TestDefinition],
        interpretation: InterpretationFile,
    ) -> None:
        self.default_window_months = default_window_months
        self.drugs = drugs
        self.tests = tests
        self.interpretation = interpretation
        self.identity = IdentityRules()
        self.immunoglobulin = ImmunoglobulinRules()


def load_base(base_dir: Path) -> Loaded:
    missing = [name for name in BASE_FILES if not (base_dir / name).is_file()]
    if missing:
        raise KnowledgeBaseError(
            f"{base_dir}: knowledge base file(s) missing: {', '.join(missing)} "
            "(pass base_dir= the directory holding drugs.yaml, tests.yaml, interpretation.yaml)"
        )
    drugs_path, tests_path, interp_path = (base_dir / name for name in BASE_FILES)
    drugs_file = _validate(DrugsFile, read_yaml(drugs_path), drugs_path)
    tests_file = _validate(TestsFile, read_yaml(tests_path), tests_path)
    interpretation = _validate(InterpretationFile, read_yaml(interp_path), interp_path)
    return Loaded(
        drugs_file.default_window_months,
        _unique(drugs_file.drugs, drugs_path, "drugs"),
        _unique(tests_file.tests, tests_path, "tests"),
        interpretation,
    )


def apply_site(loaded: Loaded, path: Path) -> None:
    data = read_yaml(path)
    unknown = sorted(set(data) - SITE_KEYS)
    if unknown:
        raise KnowledgeBaseError(
            f"{path}: {unknown[0]}: unknown key (a site file may give "
            f"{', '.join(sorted(SITE_KEYS))})"
        )
    if "default_window_months" in data:
        value = data["default_window_months"]
        if type(value) is not int or not 1 <= value <= 120:
            raise KnowledgeBaseError(
                f"{path}: default_window_months: {value!r} is not a whole number of months 1-120"
            )
        loaded.default_window_months = value
    loaded.drugs = _merge_records(Drug, loaded.drugs, data.get("drugs"), path, "drugs")
    loaded.tests = _merge_records(TestDefinition, loaded.tests, data.get("tests"), path, "tests")
    if "interpretation" in data:
        raw = data["interpretation"]
        if not isinstance(raw, dict):
            raise KnowledgeBaseError(f"{path}: interpretation: must be a mapping")
        merged = _deep_add(loaded.interpretation.model_dump(), raw)
        loaded.interpretation = _validate(InterpretationFile, merged, path, "interpretation")
    if "identity" in data:
        raw = data["identity"]
        if not isinstance(raw, dict):
            raise KnowledgeBaseError(f"{path}: identity: must be a mapping")
        merged = {**loaded.identity.model_dump(), **raw}
        loaded.identity = _validate(IdentityRules, merged, path, "identity")
    if "immunoglobulin" in data:
        raw = data["immunoglobulin"]
        if not isinstance(raw, dict):
            raise KnowledgeBaseError(f"{path}: immunoglobulin: must be a mapping")
        merged = {**loaded.immunoglobulin.model_dump(), **raw}
        loaded.immunoglobulin = _validate(ImmunoglobulinRules, merged, path, "immunoglobulin")


def check_drug_codes(loaded: Loaded, where: str) -> None:
    """A code or name that two drugs both claim would be matched arbitrarily: refuse it."""
    owner: dict[tuple[str, str], str] = {}
    for drug in loaded.drugs.values():
        claims = [
            *(("NDC", ndc_key(*c.split("-")[:2])) for c in drug.ndc),
            *(("RxNorm", c) for c in drug.rxnorm),
            *(("HCPCS", c.upper()) for c in drug.hcpcs),
            *(("CVX", c) for c in drug.cvx),
            *(("local code", c.strip().upper()) for c in drug.local_codes),
            *(("name", " ".join(re.findall(r"[a-z0-9]+", n.lower()))) for n in drug.names()),
            *(
                ("alias", "".join(re.findall(r"[a-z0-9]+", a.lower())))
                for a in (*drug.text_aliases, *drug.context_aliases)
            ),
        ]
        for kind, value in dict.fromkeys(claims):
            other = owner.setdefault((kind, value), drug.id)
            if other != drug.id:
                raise KnowledgeBaseError(
                    f"{where}: {kind} {value!r} is given for both {other} and {drug.id}"
                )


def _merge_records(
    model: type[R], current: dict[str, R], entries: Any, path: Path, key: str
) -> dict[str, R]:
    if entries is None:
        return current
    if not isinstance(entries, list):
        raise KnowledgeBaseError(f"{path}: {key}: must be a list of entries with an id")
    out = dict(current)
    given: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            raise KnowledgeBaseError(f"{path}: {where}: must be a mapping with an id")
        ident = entry.get("id")
        if not isinstance(ident, str) or not ident:
            raise KnowledgeBaseError(f"{path}: {where}.id: required key missing")
        if ident in given:
            raise KnowledgeBaseError(
                f"{path}: {where}.id: duplicate id {ident!r} (also {key}[{given[ident]}])"
            )
        given[ident] = i
        base = out.get(ident)
        if base is None:
            out[ident] = _validate(model, entry, path, where)
            continue
        merged: dict[str, Any] = base.model_dump()
        for field, value in entry.items():
            if field in ADDITIVE[key] and isinstance(value, list):
                # The site's items first, so an error in them is reported at their own index.
                site_items: list[Any] = value
                existing: list[Any] = list(merged.get(field) or [])
                merged[field] = [*site_items, *(v for v in existing if v not in site_items)]
            else:
                merged[field] = value
        out[ident] = _validate(model, merged, path, where)
    return out


def _deep_add(base: Any, extra: Any) -> Any:
    """Site interpretation on top of ours: lists are prepended to ours, mappings merged."""
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for k, v in extra.items():
            out[k] = _deep_add(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(extra, list):
        return [*extra, *(v for v in base if v not in extra)]
    return extra
