"""Art. 9 / art. 10 and confidential-category word lists: inflections, weights, thresholds."""

from __future__ import annotations

from policy.lexicon import LexiconScanner, builtin_categories
from policy.model import Level
from policy.settings import LexiconCategory

SCANNER = LexiconScanner(builtin_categories())


def detectors(text: str) -> dict[str, tuple[str, ...]]:
    return {hit.category.detector: hit.terms for hit in SCANNER.scan(text.lower())}


def test_danish_inflections_of_a_stem_are_found() -> None:
    for word in ("diagnose", "diagnosen", "diagnoser", "diagnosticeret", "Diagnoserne"):
        assert "art9.health" in detectors(f"Lægen stillede {word} i går."), word


def test_sick_leave_message_is_health() -> None:
    found = detectors("Jeg er sygemeldt og har fået diagnosen depression.")
    assert found["art9.health"] == ("depression*", "diagnos*", "sygemeld*")


def test_single_generic_word_does_not_fire() -> None:
    assert detectors("Nyhedsbrev: sundhed, sundhed og atter sundhed i kantinen.") == {}
    assert detectors("Health and safety week starts Monday.") == {}


def test_repeating_a_weak_word_does_not_add_up() -> None:
    assert detectors("stress " * 50) == {}


def test_criminal_record_in_danish_and_english() -> None:
    assert "art10.criminal" in detectors("Vi har modtaget din straffeattest.")
    assert "art10.criminal" in detectors("The candidate was convicted in 2018.")


def test_word_must_start_at_a_word_boundary() -> None:
    # "dom" (judgment) is weak and whole-word only; "domæne", "kundeomtale" never count
    assert SCANNER.count("domænet og kundeomtalen og eksdom") == {}


def test_whole_word_term_does_not_match_a_longer_word() -> None:
    counts = SCANNER.count("gravide gravid")
    terms = {term for (_index, term) in counts}
    assert terms == {"gravid"}
    assert sum(counts.values()) == 1


def test_phrases_are_matched() -> None:
    found = detectors("Medarbejderen har fortalt om sin seksuelle orientering.")
    assert found == {"art9.sex_life": ("seksuelle orientering",)}


def test_confidential_categories_have_confidential_level() -> None:
    hits = SCANNER.scan("du har en restance, og sagen går til inkasso".lower())
    assert [(h.category.detector, h.category.level) for h in hits] == [
        ("confidential.income_debt", Level.CONFIDENTIAL)]


def test_custom_category_and_threshold() -> None:
    custom = LexiconCategory("projects", "lexicon.projects", Level.CONFIDENTIAL, 2,
                             {"projekt ørn": 2, "ørn*": 1})
    scanner = LexiconScanner([custom])
    assert scanner.scan("status på projekt ørn") and not scanner.scan("en ørn fløj forbi")


def test_disabled_category_is_not_scanned() -> None:
    off = [LexiconCategory(c.name, c.detector, c.level, c.threshold, c.terms, enabled=False)
           for c in builtin_categories()]
    assert LexiconScanner(off).scan("straffeattest diagnose") == []


def test_counts_from_several_parts_are_judged_together() -> None:
    first = SCANNER.count("medicinering")  # weight 2
    second = SCANNER.count("hospitalet")  # weight 1
    merged = dict(first)
    for key, n in second.items():
        merged[key] = merged.get(key, 0) + n
    assert SCANNER.evaluate(first) == []
    assert [h.category.detector for h in SCANNER.evaluate(merged)] == ["art9.health"]


def test_everyday_danish_false_friends_do_not_fire() -> None:
    # "reception" (front desk), "konvertere" (a file), a civil judgment, expenses ("udlæg")
    assert detectors("Velkommen i receptionen; din recept ligger klar.") == {}
    assert detectors("Husk at konvertere filen til PDF før mødet i folkekirken.") == {}
    assert detectors("Dommen i lejesagen blev afsagt i dag; se vores anmeldelse.") == {}
    assert detectors("Refusion af udlæg sker med næste løn.") == {}
