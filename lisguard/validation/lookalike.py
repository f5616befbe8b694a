"""Test and drug names that look like what lisguard reads but match nothing in its knowledge
base: the local codes a site has to add before it goes live.

A site's LIS names tests its own way ("BB PREOP PANEL", "IMFIX SERUM", "IG G"), its pharmacy
system truncates or glues drug names ("DARATUMU 16MG/KG", "DARZALEXFASPRO1800MG"). The knowledge
base matches by LOINC, local code and carefully bounded name patterns; these heuristics are
wider on purpose, because a candidate is only shown to a person, never acted on.

What is NOT a candidate:
- anything the knowledge base already maps (any category, in either triplet);
- a name the knowledge base excludes on purpose: the exclusion patterns of every definition of
  the category the candidate would join veto it ("IGG SUBCLASS 4", "CMV IGG", "HLA ANTIBODY
  SCREEN", "URINE PEP", "ELECTRONIC XM" stay out);
- names that only share letters: heuristics are word-bounded ("DATE OF SERVICE" is no DAT,
  "FLOWSHEET NOTE" no flow cytometry), flow needs a cytometry word AND a plasma-cell or marrow
  word, and a short list below keeps out electrophoresis of haemoglobin, lipoproteins and
  isoenzymes, flow studies of other things, and the blood bank's administrative items
  (comments, armbands, dates);
- a test the site switched off (`enabled: false`): the site decided.
A code is looked at only when the element has no text ("IFE^^L"): a text says what the code is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import NamedTuple

from lisguard.domain.catalog import compile_any
from lisguard.domain.facts import Coded
from lisguard.domain.knowledge import KnowledgeBase, TestCategory

AREAS: dict[str, str] = {
    "blood_bank": "blood bank",
    "protein": "SPEP/IFE",
    "flow": "flow cytometry",
    "immunoglobulin": "immunoglobulin (IgG/IgA/IgM)",
}
AREA_OF: dict[TestCategory, str] = {
    **dict.fromkeys(
        (
            TestCategory.IAT_SEROLOGY,
            TestCategory.ABO_RH,
            TestCategory.DAT,
            TestCategory.RBC_PHENOTYPE,
            TestCategory.RBC_GENOTYPE,
            TestCategory.BLOOD_PRODUCT_ORDER,
            TestCategory.NON_RBC_PRODUCT,
        ),
        "blood_bank",
    ),
    TestCategory.SPEP: "protein",
    TestCategory.IFE: "protein",
    TestCategory.FLOW_MRD: "flow",
    TestCategory.ALL_FLOW_MRD: "flow",
    TestCategory.IGG: "immunoglobulin",
    TestCategory.IGA: "immunoglobulin",
    TestCategory.IGM: "immunoglobulin",
}


class LabHint(NamedTuple):
    """Why a name looks like a test lisguard reads, and the knowledge-base test a site file
    would add its code to (a suggestion: the reviewer decides)."""

    area: str
    test_id: str
    why: str


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_SERUM = _rx(r"\bSERUM\b|\bSER\b|\bSRM\b")
_ALL_MRD = _rx(r"\b[BT]\s*-?\s*ALL\b|LYMPHOBLAST")
_FLOW_WORD = _rx(
    r"\bFLOW\b|\bFLOW\s*CYTO\w*|\bCYTOMETR\w*|\bFCM\b|\bFACS\b|\bIMMUNO\s*-?\s*PHENO\w*|\bIPT\b"
)
_PLASMA_WORD = _rx(
    r"\bPLASMA\s*CELLS?\b|\bPCN\b|\bPCD\b|\bMYELOMA|\bMGUS\b|\bMARROW\b|\bBM\b|\bMRD\b"
    r"|\bRESIDUAL\b|\bCD\s*-?\s*38\b|\bCD\s*-?\s*138\b|\bVS\s*-?\s*38|\bCD\s*-?\s*229\b"
)
# A result naming a plasma-cell marker: the order it sits under is a flow panel for plasma cells.
MARKERS = _rx(r"\bCD\s*-?\s*38\b|\bCD\s*-?\s*138\b|\bVS\s*-?\s*38C?\b|\bCD\s*-?\s*229\b")

# (area, suggested test id, why, pattern), most specific first: the first that matches wins.
_HINTS: tuple[tuple[str, str, str, re.Pattern[str]], ...] = (
    ("flow", "flow_mrd", "names plasma-cell MRD or a plasma-cell marker", _rx(
        r"\bMRD\b|\bMINIMAL\s+RESID\w*|\bMEASURABLE\s+RESID\w*|\bEUROFLOW|\bNGF\b"
        r"|\bCD\s*-?\s*38\b|\bCD\s*-?\s*138\b|\bVS\s*-?\s*38C?\b"
        r"|\bPLASMA\s+CELLS?\s+(PANEL|FLOW|CYTOM\w*|ENUM\w*|CLONAL\w*|IMMUNO\w*|STUD\w*)")),
    ("blood_bank", "crossmatch", "names a crossmatch", _rx(
        r"\bX\s*-?\s*MA?TCH\w*|\bXM(A?TCH\w*|AHG|IAT|\d\w*)?\b|\bCROSS\s*-?\s*MA?TCH\w*"
        r"|\bCRS\s*MTCH|\bCOMPAT\w*\b")),
    ("blood_bank", "type_and_screen", "names a type and screen / type and hold", _rx(
        r"\bTYPE\s*(AND|&|\+|/|N)?\s*(HOLD|SCR\w*|SCN|SC|XM|CROSS\w*)\b|\bT\s*(&|AND|/|\+)\s*[SHX]\b"
        r"|\bGROUP\s*(AND|&|\+|/)\s*(SCR\w*|SAVE|HOLD)\b|\bG\s*(&|/)\s*[SH]\b")),
    ("blood_bank", "antibody_identification", "names an antibody identification or eluate", _rx(
        r"\bAB\s*-?\s*ID\w*\b|\bANTI\s*-?\s*B(O)?DY\s+(ID|IDENT\w*|PANEL|INVEST\w*|WORK\s*-?\s*UP)"
        r"|\bABID\w*|\bELUAT\w*|\bELUTION\b")),
    ("blood_bank", "indirect_antiglobulin_test", "names an indirect antiglobulin test", _rx(
        r"\bIAT\b|\bINDIRECT\s+(COOMBS?|ANTI\s*-?\s*GLOB\w*|AHG)|\bIND\w*\.?\s+COOMBS?")),
    ("blood_bank", "antibody_screen", "names an antibody screen", _rx(
        r"\bANTI\s*-?\s*B(O)?DY\s*(SC\w*|DET\w*)|\bANTIBDY\w*|\bAB\s*(SCR\w*|SCN|SC)\b"
        r"|\bABS\s*(SCR\w*|SCN)\b|\bABSC\w*|\bABY\s*SC\w*")),
    ("blood_bank", "direct_antiglobulin_test", "names a DAT / direct Coombs", _rx(
        r"\bDATS?\b|\bDCT\b|\bCOOMBS?\b|\bDIR(ECT)?\.?\s+(ANTI\s*-?\s*GLOB\w*|AHG)"
        r"|\bANTI\s*-?\s*GLOBULIN\b|\bAHG\b")),
    ("blood_bank", "rbc_genotype", "names red-cell genotyping", _rx(
        r"\bGENOTYP\w*\b.{0,30}\b(RBC|RED|BLOOD|ANTIGEN|KELL?|RH|DUFFY|KIDD)\b|\bBEADCHIP"
        r"|\bHEA\b|\bRHD\s*GENO\w*|\bRHCE\b")),
    ("blood_bank", "rbc_phenotype", "names red-cell antigen typing", _rx(
        r"\bPHENO\s*TYP\w*|\bPHENO\b|\bANTIGEN\s+TYP\w*|\bAG\s+TYP\w*|\bRBC\s+(AG|ANTIGEN)S?\b"
        r"|\b(KELL|DUFFY|KIDD|LEWIS|MNS)\b|\bEXTENDED\s+(TYP|PHENO)\w*")),
    ("blood_bank", "abo_rh", "names ABO/Rh typing", _rx(
        r"\bABO\w*|\bRH\s*(TYP\w*|D\b|\(D\)|FACTOR|GROUP)|\bRHD\b|\bBL(OO)?D\s*(TYP\w*|GR(OU)?P\w*)"
        r"|\bGRP\s*(&|AND|/)?\s*RH\b|\bWEAK\s*D\b")),
    ("blood_bank", "red_cell_product_order", "names a red-cell product", _rx(
        r"\bPRBCS?\b|\bPRC\b|\bLRBCS?\b|\bRBC\s*(UNITS?|PRODUCTS?|PROD|TRANSF\w*|PREP\w*|ORDER"
        r"|ISSUE|REQ\w*|IRR\w*|LR|LEUKO\w*)\b|\b(UNITS?|TRANSF\w*|PREP\w*|ISSUE|DISPENSE|XFUS\w*)"
        r"\s+(OF\s+)?(RBCS?|PRBCS?|RED\s+CELLS?|BLOOD)\b|\bXFUS\w*|\bBLOOD\s+(PRODUCT|UNIT)S?\b")),
    ("blood_bank", "type_and_screen", "names the blood bank (which test is it?)", _rx(
        r"\bBB\b|\bBBK\b|\bBLOOD\s*BANK\b|\bBLD\s*BNK\b|\bTRANSFUSION\s+(SERVICE|MEDICINE|LAB\w*)"
        r"|\bIMMUNO\s*-?\s*HEMAT\w*|\bPRE\s*-?\s*TRANSFUSION\b")),
    ("protein", "ife", "names an immunofixation", _rx(
        r"\bIFE\w*|\bIFIX\w*|\bIMM?\s*-?\s*FIX\w*|\bIMMUNO\s*-?\s*FIX\w*|\bIMFX\b|\bIFX\b"
        r"|\bIMMUNOTYP\w*|\bIMMUNO\s*-?\s*SUBTR\w*|\bIEP\b|\bIMMUNO\s*-?\s*ELECTRO\w*"
        r"|\bHYDRASHIFT|\bDIRA\b")),
    ("protein", "protein_electrophoresis", "names a protein electrophoresis / M-protein", _rx(
        r"\bS?PEP\b|\bSPE\b|\bELECTROPH\w*|\bELP\b|\bELPH\b|\bPROT\w*\s+(ELEC\w*|EP|ELP)\b"
        r"|\bM\s*-?\s*(SPIKE|PROT\w*|PEAK|BAND|COMPONENT)\b|\bMONOCLONAL\s+(PROT\w*|BAND|SPIKE"
        r"|GAMMOPATHY|PEAK)|\bPARA\s*-?\s*PROT\w*|\bMYELOMA\s+(SCREEN|PANEL|STUD\w*)"
        r"|\bPROTEIN\s+FRACTION\w*")),
)
_IG = _rx(
    r"\bIG\s*-?\s*(?P<a>[GAM])(?![A-Z])|\bIMM?UNO?\s*-?\s*GLOB\w*\s*,?\s*-?\s*(?P<b>[GAM])(?![A-Z])"
    r"|\bIMM?\s+GLOB\s+(?P<c>[GAM])(?![A-Z])"
)
_IG_TESTS = {"G": "immunoglobulin_g", "A": "immunoglobulin_a", "M": "immunoglobulin_m"}
_BB_CODE = re.compile(r"BB[A-Z0-9]", re.IGNORECASE)

# Names the heuristics would catch that are something else.
_NOT_IT: dict[str, re.Pattern[str]] = {
    "blood_bank": _rx(
        r"\bCOMMENTS?\b|\bCMT\b|\bNOTES?\b|\bREMARKS?\b|\bARMBAND|\bBRACELET|\bLABEL\b|\bCHARGE"
        r"|\bBILLING|\bFEE\b|\bCALL(ED)?\b|\bDATE\b|\bTIME\b|\bSPEC\w*\s+(EXP\w*|ID|NUMBER|NO)\b"
        r"|\bBAND\s*(NO|NUM\w*|#)|\bHISTORY\b|\bCONSENT\b|\bCORD\b|\bDONOR\b|\bPLATELETS?\b"
        r"|\bPLASMA\b|\bFFP\b|\bCRYO\w*|\bHLA\b|\bPRENATAL\s+HX"
    ),
    "protein": _rx(
        r"H(A)?EMOGLOBIN|\bHGB\b|\bHB\b|\bHB\s*[AFSC]\d?\b|LIPOPROTEIN|\bLIPID|ISO\s*-?\s*ENZYME"
        r"|ISOFORM|\bALP\b|ALKALINE|\bLDH?\b|\bCK\b|\bCPK\b|CREATINE|TRANSFERRIN|\bCDT\b"
        r"|HAPTOGLOBIN|OLIGOCLONAL|\bCSF\b|\bURINE\b|\bUR\b|\bUPEP\b|\bUIFE\b|\b24\s*-?\s*H"
        r"|LACTATE|AMYLASE|\bGGT\b|\bIGE\b|\bIGD\b|\bCOMMENTS?\b|\bNOTES?\b|\bEPO\b|\bPEPSIN"
    ),
    "flow": _rx(
        r"FLOW\s*RATE|PEAK\s+FLOW|UROFLOW|BLOOD\s+FLOW|FLOW\s+VOLUME|FLOWSHEET|DOPPLER|\bCD\s*[348]\b"
        r"|\bHLA\b|CROSS\s*-?\s*MATCH|\bXM\b|PLATELET|\bPNH\b|FLAER|FETAL|\bKB\b|KLEIHAUER|\bHBF\b"
        r"|STEM\s*CELL|\bCD\s*34\b|SPERM|RETIC|\bDNA\b|PLOIDY|S\s*-?\s*PHASE|\bCOMMENTS?\b"
        r"|\bNOTES?\b|\bNGS\b|SEQUENC|CLONOSEQ|\bPCR\b|MOLECULAR|CHIMERISM"
    ),
    "immunoglobulin": _rx(r"\bIGE\b|\bIGD\b|\bCOMMENTS?\b|\bNOTES?\b|\bTHERAPY\b|\bDOSE\b"),
}


class Lookalike:
    """The heuristics for one knowledge base: which elements are candidates, and for what."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._vetoes: dict[TestCategory, re.Pattern[str]] = {}
        self._tests: dict[tuple[Coded, Coded], LabHint | None] = {}
        self._markers: dict[tuple[Coded, Coded], bool] = {}
        self._drugs = DrugWords(kb)

    def categories(self, code: Coded, alt: Coded) -> frozenset[TestCategory]:
        return self.kb.categorize(code) | self.kb.categorize(alt)

    def test(self, code: Coded, alt: Coded) -> LabHint | None:
        """Why this element (OBR-4, OBX-3) looks like a test lisguard reads although it maps to
        nothing, or None. Answers are cached: a feed repeats its few thousand codes."""
        key = (code, alt)
        try:
            return self._tests[key]
        except KeyError:
            pass
        hint = None
        if not self.categories(code, alt) and not self._question(code, alt):
            hint = self._test_hint(code, alt)
        if len(self._tests) >= 50_000:
            self._tests.clear()
        self._tests[key] = hint
        return hint

    def is_marker(self, code: Coded, alt: Coded) -> bool:
        """The element names a plasma-cell flow marker (CD38, CD138, VS38c, CD229): a result
        of a flow panel, not a test of its own."""
        key = (code, alt)
        found = self._markers.get(key)
        if found is None:
            found = any(MARKERS.search(t) for t in (code.text, alt.text) if t)
            if len(self._markers) >= 50_000:
                self._markers.clear()
            self._markers[key] = found
        return found

    def order_by_markers(self, code: Coded, alt: Coded) -> LabHint | None:
        """An order lisguard does not know whose results name CD38/CD138: a plasma-cell flow
        panel, unless its name is one the knowledge base keeps out of flow MRD (CLL, AML...)."""
        hint = LabHint("flow", "flow_mrd", "its results name CD38/CD138")
        texts = [t for t in (code.text, alt.text) if t] or [c for c in (code.code, alt.code) if c]
        for text in texts or [""]:
            if self._kept(hint, text) is None:
                return None
        return hint

    def _question(self, code: Coded, alt: Coded) -> bool:
        """An order question ("Anti-CD38 therapy (daratumumab, isatuximab)?"): the knowledge
        base reads it as one (drugs_asked_about), it is no test."""
        if any(t.rstrip().endswith("?") for t in (code.text, alt.text)):
            return True
        return bool(self.kb.drugs_asked_about(code, alt))

    def _test_hint(self, code: Coded, alt: Coded) -> LabHint | None:
        texts = [t for t in (code.text, alt.text) if t]
        if not texts:  # a bare code: read as a mnemonic ("IFE", "BBXM")
            texts = [c for c in (code.code, alt.code) if c]
            if any(_BB_CODE.match(c) for c in texts):
                texts.append("BB")
        for text in texts:
            hint = self._hint_for(text)
            if hint is not None:
                return hint
        return None

    def _hint_for(self, text: str) -> LabHint | None:
        for area, test_id, why, pattern in _HINTS:
            if pattern.search(text) is not None:
                if area == "protein" and _SERUM.search(text):
                    test_id = "ife_serum" if test_id == "ife" else "spep"
                return self._kept(LabHint(area, test_id, why), text)
        if _FLOW_WORD.search(text) and _PLASMA_WORD.search(text):
            hint = LabHint("flow", "flow_mrd", "names a flow panel for plasma cells or marrow")
            return self._kept(hint, text)
        m = _IG.search(text)
        if m is not None:
            letter = (m["a"] or m["b"] or m["c"]).upper()
            hint = LabHint("immunoglobulin", _IG_TESTS[letter], f"names Ig{letter}")
            return self._kept(hint, text)
        return None

    def _kept(self, hint: LabHint, text: str) -> LabHint | None:
        if hint.area == "flow" and _ALL_MRD.search(text):
            hint = hint._replace(test_id="all_flow_mrd")
        definition = self.kb.tests.get(hint.test_id)
        if definition is None or not definition.enabled:
            return None
        if _NOT_IT[hint.area].search(text) is not None:
            return None
        if self._veto(definition.category).search(text) is not None:
            return None
        return hint

    def _veto(self, category: TestCategory) -> re.Pattern[str]:
        """Every exclusion of every enabled definition of the category: a name the knowledge
        base turns away on purpose is not a candidate."""
        found = self._vetoes.get(category)
        if found is None:
            patterns = [
                p
                for t in self.kb.tests.values()
                if t.enabled and t.category is category
                for p in t.exclude_patterns
            ]
            found = self._vetoes[category] = compile_any(patterns)
        return found

    def drug(self, coded: Coded) -> DrugHint | None:
        """Why a pharmacy code element looks like a drug lisguard knows although it matched
        none, or None (the caller checks first that the field matched no drug)."""
        return self._drugs.hint(coded)


class DrugHint(NamedTuple):
    drug_id: str
    token: str  # the word in the element that looked like the drug
    why: str


# Words of drug names that say nothing about which drug it is.
_STOP = frozenset(
    (
        "immune", "globulin", "immunoglobulin", "intravenous", "subcutaneous", "intramuscular",
        "human", "normal", "infusion", "injection", "with", "and", "recombinant",
        "hyaluronidase", "ultra", "filtered", "plus", "liquid", "mini", "dose", "antibody",
        "monoclonal", "anti", "fihj", "irfc", "cqyv", "bcmm", "tgvs",
    )
)
_LETTERS = re.compile(r"[A-Za-z]+")


class DrugWords:
    """The words of every drug name and alias the knowledge base knows, and which drugs they
    belong to; an element is a candidate when one of its words is such a word glued to other
    text, the start of one (a truncation), or one misspelt."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._owners: dict[str, list[str]] = {}  # upper-cased word -> drug ids, in KB order
        for drug in kb.drugs.values():
            names = (*drug.names(), *drug.text_aliases, *drug.context_aliases)
            for word in _words(names):
                owners = self._owners.setdefault(word, [])
                if drug.id not in owners:
                    owners.append(drug.id)
        self._by_initial: dict[str, list[str]] = {}
        for word in self._owners:
            self._by_initial.setdefault(word[0], []).append(word)
        self._cache: dict[Coded, DrugHint | None] = {}

    def hint(self, coded: Coded) -> DrugHint | None:
        try:
            return self._cache[coded]
        except KeyError:
            pass
        found = None
        for text in (coded.text, coded.code):
            found = self._hint(text)
            if found is not None:
                break
        if len(self._cache) >= 50_000:
            self._cache.clear()
        self._cache[coded] = found
        return found

    def _hint(self, text: str) -> DrugHint | None:
        scores: dict[str, int] = {}
        first: dict[str, tuple[str, str]] = {}
        for token in (t.upper() for t in _LETTERS.findall(text)):
            for word, why in self._matches(token):
                for drug_id in self._owners[word]:
                    scores[drug_id] = scores.get(drug_id, 0) + len(word)
                    first.setdefault(drug_id, (token, why))
        if not scores:
            return None
        order = list(self.kb.drugs)  # the most matched letters wins; then the KB's order
        best = max(scores, key=lambda d: (scores[d], -order.index(d)))
        token, why = first[best]
        return DrugHint(best, token, why)

    def _matches(self, token: str) -> Iterable[tuple[str, str]]:
        if len(token) < 4:
            return
        for word in self._owners:
            if token == word:
                yield word, f"{word} glued to other text"
            elif len(word) >= 6 and word in token:
                yield word, f"{word} inside {token}"
            elif len(token) >= 5 and word.startswith(token) and len(token) >= 0.6 * len(word):
                yield word, f"{token} is the start of {word}"
        if len(token) >= 6:
            for word in self._by_initial.get(token[0], ()):
                if len(word) >= 6 and token != word and word not in token and abs(
                    len(word) - len(token)
                ) <= 2:
                    ratio = difflib.SequenceMatcher(None, token, word).ratio()
                    if ratio >= 0.84 and not word.startswith(token):
                        yield word, f"{token} looks like a misspelt {word}"


def _words(names: Iterable[str]) -> set[str]:
    found = set()
    for name in names:
        for word in _LETTERS.findall(name):
            lower = word.lower()
            if len(word) >= 4 and lower not in _STOP:
                found.add(word.upper())
    return found
