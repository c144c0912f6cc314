"""Word lists for GDPR art. 9 and art. 10 and Danish "fortrolige" categories.

A term ending in `*` is a stem and covers the Danish inflections
(diagnose, diagnosen, diagnoser, diagnosticeret); any other term is matched as a
whole word or phrase. Weights say how telling one distinct term is on its own:
3 decides alone ("straffeattest", "sygemelding"), 2 needs company, 1 is a
generic word ("sundhed") that only counts next to others, so a newsletter
about health policy does not turn sensitive. A category fires when the summed
weights of the *distinct* terms found reach its threshold: repeating a generic
word does not add up.

Matching uses an Aho-Corasick automaton (pyahocorasick) over the folded text,
which keeps the scan linear however many terms the policy adds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import ahocorasick

from policy.model import Level
from policy.prefilter import fold
from policy.settings import LexiconCategory

_HEALTH = {
    # Danish
    "diagnos*": 3, "sygemeld*": 3, "psykiatri*": 3, "psykiater*": 3, "psykolog*": 2,
    "depression*": 3, "depressiv*": 3, "angstlidel*": 3, "kræft*": 2, "cancer*": 2,
    "kemoterapi*": 3, "strålebehandl*": 3, "journalnotat*": 2, "patientjournal*": 3,
    "indlæggelse*": 2, "indlagt": 2, "genoptræning*": 2, "medicin": 1, "medicinering*": 2,
    "recept": 1, "recepten": 1, "recepter": 1, "antidepressiv*": 3, "handicap*": 2, "funktionsnedsættelse*": 2,
    "sygdom": 2, "sygdommen": 2, "sygdomme": 2, "sygdommes": 2, "sygefravær*": 2,
    "sygedagpenge*": 2, "lægeerklæring*": 3, "speciallæge*": 2, "egen læge": 2,
    "skizofreni*": 3, "bipolar*": 3, "adhd": 3, "autisme": 3, "autistisk*": 3,
    "demens*": 3, "diabetes": 3, "sklerose": 3, "epilepsi*": 3, "hiv": 3, "aids": 2,
    "graviditet*": 2, "gravid": 2, "abort": 3, "aborten": 3, "misbrug*": 2,
    "alkoholmisbrug*": 3, "stofmisbrug*": 3, "afvænning*": 3, "selvmord*": 3,
    "stress": 1, "stressramt*": 2, "hospital": 1, "hospitalet": 1, "sygehus*": 1,
    "behandling": 1, "sundhed": 1, "sundhedsoplysning*": 3, "helbred*": 2,
    "helbredsoplysning*": 3, "operation": 1, "operationen": 1, "smerter": 2,
    # English
    "diagnosis": 3, "diagnoses": 3, "diagnosed": 3, "sick leave": 3, "sick note": 3,
    "psychiatric": 3, "mental health": 2, "medical record*": 3, "medical condition*": 3,
    "treatment": 1, "chemotherapy": 3, "pregnant": 2, "pregnancy": 2, "disability": 2,
    "disabilities": 2, "illness": 2, "medication": 2, "prescription*": 1,
    "health": 1, "hospitalised": 2, "hospitalized": 2, "substance abuse": 3,
    "schizophreni*": 3, "dementia": 3, "epilepsy": 3, "doctor's note": 3,
}

_CRIMINAL = {
    "straffeattest*": 3, "børneattest*": 2, "sigtelse*": 3, "sigtet": 3, "sigtede": 2,
    "tiltale": 3, "tiltalen": 3, "tiltalt": 3, "tiltalte": 2, "anklageskrift*": 3,
    "dømt": 3, "domfæld*": 3, "dom": 1, "dommen": 1, "domme": 1, "straffesag*": 3,
    "straffelov*": 2, "fængsel": 2, "fængslet": 2, "fængselsstraf*": 3,
    "betinget dom": 3, "ubetinget": 2, "samfundstjeneste": 3, "varetægt*": 3,
    "anholdt": 2, "anholdelse*": 2, "afhøring*": 2, "politianmeld*": 2, "anmeldelse": 1,
    "strafbar*": 2, "lovovertrædelse*": 2, "kriminel*": 2, "kriminalitet": 2,
    "bødeforlæg*": 3, "overtrædelse": 1, "vold": 2, "voldsdom*": 3, "tyveri*": 2,
    "narkotika*": 2, "kriminalforsorg*": 3, "prøveløsla*": 3, "fodlænke*": 3,
    # English
    "criminal record*": 3, "convicted": 3, "conviction*": 3, "sentenced": 3,
    "prison": 2, "imprisonment": 3, "charged with": 3, "indictment": 3, "arrested": 2,
    "offence": 2, "offense": 2, "probation": 2, "parole": 2, "criminal": 2,
}

_ETHNIC = {
    "etnisk oprindelse": 3, "etniske oprindelse": 3, "etnicitet*": 2, "race": 1, "racemæssig*": 3,
    "hudfarve": 2, "flygtningestatus": 2, "ethnic origin": 3, "ethnicity": 2,
    "racial": 2, "etniske minoritet*": 2,
}

_POLITICAL = {
    "politisk overbevisning": 3, "politiske overbevisning": 3, "partimedlem*": 3,
    "medlem af partiet": 3, "partitilhørsforhold": 3, "politisk holdning": 2,
    "political opinion*": 3, "party membership": 3, "political affiliation": 3,
}

_RELIGION = {
    "religiøs overbevisning": 3, "religiøse overbevisning": 3, "religion": 2, "trosretning*": 3, "trossamfund*": 2,
    "muslim": 2, "muslimsk": 2, "jødisk": 2, "katolik*": 2,
    "jehovas vidne*": 3, "religious belief*": 3, "philosophical belief*": 3,
    "udmeldt af folkekirken": 3, "folkekirke*": 1,
}

_UNION = {
    "fagforening*": 2, "fagforbund*": 2, "fagligt medlem*": 3, "tillidsrepræsentant*": 1,
    "medlem af 3f": 3, "a-kasse*": 1, "trade union": 2, "union membership": 3,
    "union member": 3, "fagforeningsmedlem*": 3,
}

_GENETIC = {
    "genetisk*": 2, "gentest*": 3, "dna-test*": 3, "dna-profil*": 3, "arveanlæg*": 3,
    "genetic test*": 3, "genetic data": 3, "genome": 2,
}

_BIOMETRIC = {
    "biometri*": 3, "fingeraftryk*": 2, "ansigtsgenkend*": 3, "irisscan*": 3,
    "biometric*": 3, "fingerprint*": 2, "facial recognition": 3,
}

_SEX_LIFE = {
    "seksuel orientering": 3, "seksuelle orientering": 3, "homoseksuel*": 3,
    "biseksuel*": 3, "transkønnet*": 3, "kønsskifte*": 3, "seksualliv*": 3,
    "kønsidentitet*": 2, "sexual orientation": 3, "sex life": 3, "homosexual*": 3,
    "transgender": 3, "kønssygdom*": 3,
}

_INCOME_DEBT = {
    "gæld": 2, "gælden": 2, "gældssanering*": 3, "restance*": 3, "inkasso*": 3,
    "rki": 3, "lønseddel": 3, "lønsedler": 3, "lønsedlen": 3, "årsopgørelse*": 3,
    "skatteoplysning*": 3, "indkomstoplysning*": 3, "forskudsopgørelse*": 3,
    "indkomst": 1, "bruttoindkomst": 2, "løn": 1, "lønnen": 1, "udlæg": 1,
    "fogedret*": 3, "betalingsstandsning": 3, "konkurs": 2, "tvangsauktion*": 3,
    "kontoudtog*": 3, "formueoplysning*": 3, "pension": 1, "kreditvurdering*": 2,
    "payslip*": 3, "salary": 1, "debt collection": 3, "bank statement*": 3,
    "tax return*": 3, "arrears": 3, "bankruptcy": 2,
}

_SOCIAL_CASE = {
    "kontanthjælp*": 3, "underretning*": 2, "anbringelse*": 3, "anbragt": 2,
    "børnesag*": 3, "familiesag*": 2, "socialsag*": 3, "sagsbehandler*": 1,
    "børne- og ungeudvalg*": 3, "forældremyndighed*": 3, "samvær": 2, "samværs*": 2,
    "skilsmisse*": 2, "bodeling*": 2, "hjemløs*": 2, "forsørgelse*": 2,
    "boligstøtte*": 2, "ydelsessag*": 2, "aktivering*": 1, "ressourceforløb*": 3,
    "fleksjob*": 2, "førtidspension*": 3, "jobafklaring*": 3, "udsatte børn": 3,
    "social benefits": 2, "child protection": 3, "foster care": 3, "divorce": 2,
    "custody": 2, "welfare": 1,
}

_HR = {
    "advarsel": 2, "advarslen": 2, "tjenstlig samtale": 3, "tjenstlige samtale": 3,
    "tjenstlig høring": 3, "tjenstlige høring": 3, "afsked*": 2,
    "opsigelse*": 2, "bortvis*": 3, "fratrædelse*": 2, "personalesag*": 3,
    "medarbejdersamtale*": 1, "lønforhandling*": 2, "sygesamtale*": 3,
    "fraværssamtale*": 3, "disciplinær*": 3, "personalejuridisk*": 2,
    "ansættelseskontrakt*": 1, "performance improvement plan": 3, "disciplinary": 3,
    "dismissal": 3, "written warning": 3, "termination of employment": 3,
    "grievance": 2,
}


@dataclass(frozen=True)
class BuiltinCategory:
    detector: str
    level: Level
    threshold: int
    terms: Mapping[str, int]


BUILTIN_CATEGORIES: Mapping[str, BuiltinCategory] = {
    "health": BuiltinCategory("art9.health", Level.SENSITIVE, 3, _HEALTH),
    "ethnic_origin": BuiltinCategory("art9.ethnic_origin", Level.SENSITIVE, 3, _ETHNIC),
    "political_opinion": BuiltinCategory("art9.political_opinion", Level.SENSITIVE, 3, _POLITICAL),
    "religion": BuiltinCategory("art9.religion", Level.SENSITIVE, 3, _RELIGION),
    "trade_union": BuiltinCategory("art9.trade_union", Level.SENSITIVE, 3, _UNION),
    "genetic": BuiltinCategory("art9.genetic", Level.SENSITIVE, 3, _GENETIC),
    "biometric": BuiltinCategory("art9.biometric", Level.SENSITIVE, 3, _BIOMETRIC),
    "sex_life": BuiltinCategory("art9.sex_life", Level.SENSITIVE, 3, _SEX_LIFE),
    "criminal": BuiltinCategory("art10.criminal", Level.SENSITIVE, 3, _CRIMINAL),
    "income_debt": BuiltinCategory("confidential.income_debt", Level.CONFIDENTIAL, 3, _INCOME_DEBT),
    "social_case": BuiltinCategory("confidential.social_case", Level.CONFIDENTIAL, 3, _SOCIAL_CASE),
    "hr": BuiltinCategory("confidential.hr", Level.CONFIDENTIAL, 3, _HR),
}


def builtin_categories() -> tuple[LexiconCategory, ...]:
    return tuple(
        LexiconCategory(name, b.detector, b.level, b.threshold, dict(b.terms))
        for name, b in BUILTIN_CATEGORIES.items()
    )


@dataclass(frozen=True)
class LexiconHit:
    category: LexiconCategory
    score: int
    count: int  # occurrences of all its terms
    terms: tuple[str, ...]  # the distinct terms found, as written in the lexicon


class LexiconScanner:
    """One automaton for all categories; `scan` returns the categories that fire.

    The text is folded first (see `prefilter.fold`): lower case, every non-word
    character a space. A key " diagnos" then only matches at a word start and
    " dom " only as a whole word, so the automaton reports real hits only and
    no per-character Python code runs. A phrase is keyed on its first word and
    the rest checked where that word occurs.
    """

    def __init__(self, categories: Iterable[LexiconCategory], markers: Iterable[str] = ()) -> None:
        self.categories = tuple(c for c in categories if c.enabled)
        # key -> entries (category index, term as written, rest of a phrase or None);
        # index -1: a marker, whose positions `scan_folded` reports (anywhere in a word)
        table: dict[str, list[tuple[int, str, re.Pattern[str] | None]]] = {}
        for marker in markers:
            table.setdefault(marker, []).append((-1, marker, None))
        for index, category in enumerate(self.categories):
            for term in category.terms:
                stem = term.endswith("*")
                words = fold(term.rstrip("*")).split()
                if not words:
                    continue
                if len(words) == 1:
                    key = " " + words[0] + ("" if stem else " ")
                    table.setdefault(key, []).append((index, term, None))
                    continue
                rest = re.compile(" *" + " +".join(re.escape(w) for w in words[1:])
                                  + ("" if stem else "(?= )"))
                table.setdefault(" " + words[0] + " ", []).append((index, term, rest))
        self._automaton = ahocorasick.Automaton()
        for key, entries in table.items():
            self._automaton.add_word(key, tuple(entries))
        self._empty = not table
        if not self._empty:
            self._automaton.make_automaton()

    def count_folded(self, folded: str) -> dict[tuple[int, str], int]:
        """Occurrences per (category index, term) in text already folded by `prefilter.fold`.

        Counts from several parts of a message are added up and then judged
        together by `evaluate`.
        """
        return self.scan_folded(folded)[0]

    def scan_folded(self, folded: str) -> tuple[dict[tuple[int, str], int], list[int]]:
        """`count_folded`, and where in `folded` each marker starts, in the same pass.

        The markers ride along the automaton's one walk over the text, so a
        detector that needs words anywhere in the text (reg.+konto) gets them
        without a scan of its own.
        """
        counts: dict[tuple[int, str], int] = {}
        starts: list[int] = []
        if self._empty:
            return counts, starts
        for end, entries in self._automaton.iter(folded):
            for index, term, rest in entries:
                if index < 0:
                    starts.append(end - len(term) + 1)
                elif rest is None or rest.match(folded, end + 1):
                    counts[(index, term)] = counts.get((index, term), 0) + 1
        return counts, starts

    def count(self, text: str) -> dict[tuple[int, str], int]:
        return self.count_folded(fold(text))

    def evaluate(self, counts: Mapping[tuple[int, str], int]) -> list[LexiconHit]:
        """The categories whose distinct terms weigh at least their threshold."""
        per_category: dict[int, dict[str, int]] = {}
        for (index, term), n in counts.items():
            per_category.setdefault(index, {})[term] = n
        hits: list[LexiconHit] = []
        for index, per_term in sorted(per_category.items()):
            category = self.categories[index]
            score = sum(category.terms[term] for term in per_term)
            if score >= category.threshold:
                hits.append(LexiconHit(category, score, sum(per_term.values()),
                                       tuple(sorted(per_term))))
        return hits

    def scan(self, text: str) -> list[LexiconHit]:
        return self.evaluate(self.count(text))
