"""Person names and street addresses in free text (traces/names.py): pure tests, no database.

The held-out set (tests/data/names_heldout.jsonl, built by tests/data/make_names_set.py)
was never used to tune the detector; the numbers asserted here are the issue's targets.
"""

from __future__ import annotations

import gzip
import json
import pickle
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traces import names, names_build
from traces.jsonbody import parse_json_body
from traces.names import (
    ADDRESS,
    PERSON,
    Gazetteer,
    NamesDataMissing,
    Span,
    find_people_and_addresses,
)
from traces.redaction import PSEUDONYM_RE, make_redactor, pseudonym

DATA = Path(__file__).resolve().parents[1] / "data"
KEY = b"test-key-not-a-secret"
_WORD = re.compile(r"[^\W_]+")


def _load(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _redact(text: str) -> str:
    """What the redactor does with the spans: typed, keyed pseudonyms in their place."""
    out = []
    pos = 0
    for span in find_people_and_addresses(text):
        out.append(text[pos : span.start])
        out.append(pseudonym(KEY, span.kind, span.normalized))
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def _fully_removed(text: str, expected: list[dict]) -> bool:
    """No token of any expected name or address survives the detected spans."""
    masked = list(text)
    for span in find_people_and_addresses(text):
        masked[span.start : span.end] = "\0" * (span.end - span.start)
    left = "".join(masked)
    return all(not _WORD.findall(left[e["start"] : e["end"]]) for e in expected)


def _found(text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in find_people_and_addresses(text)]


# ------------------------------------------------------------------------ held-out set

HELDOUT = _load("names_heldout.jsonl")
POSITIVES = [r for r in HELDOUT if r["spans"]]
NEGATIVES = [r for r in HELDOUT if not r["spans"]]


def test_the_held_out_set_is_as_large_and_varied_as_the_issue_asks():
    locales = Counter(r["locale"] for r in POSITIVES)
    forms = Counter(r["form"] for r in POSITIVES)
    assert len(POSITIVES) >= 400
    assert len(locales) >= 10
    assert len(NEGATIVES) >= 100
    assert {"full", "greeting", "signoff", "title", "reversed", "lower", "address"} <= set(forms)
    assert {r["locale"] for r in POSITIVES if r["form"] == "address"} >= {
        "en_US",
        "en_GB",
        "de_DE",
        "nl_NL",
        "fr_FR",
    }
    # Every expected span is where the record says it is.
    for r in POSITIVES:
        for s in r["spans"]:
            assert r["text"][s["start"] : s["end"]] == s["value"]


def test_at_least_97_percent_of_held_out_names_and_addresses_are_fully_removed():
    removed = [r for r in POSITIVES if _fully_removed(r["text"], r["spans"])]
    missed = [r["text"] for r in POSITIVES if r not in removed]
    assert len(removed) / len(POSITIVES) >= 0.97, missed


def test_at_least_97_percent_of_held_out_texts_without_personal_data_are_stored_as_sent():
    kept = [r for r in NEGATIVES if _redact(r["text"]) == r["text"]]
    changed = [_found(r["text"]) for r in NEGATIVES if r not in kept]
    assert len(kept) / len(NEGATIVES) >= 0.97, changed


# ----------------------------------------------------------------------- challenge set
# tests/data/names_challenge.jsonl (tests/data/make_names_challenge.py): other templates,
# other names and other negatives than the held-out set, measured through the redactor.

CHALLENGE = _load("names_challenge.jsonl")
CHALLENGE_POSITIVES = [r for r in CHALLENGE if r["spans"]]
CHALLENGE_NEGATIVES = [r for r in CHALLENGE if not r["spans"]]
_REDACTOR = make_redactor(key=KEY)


def _words_of(text: str) -> Counter:
    return Counter(w.casefold() for w in _WORD.findall(text))


def _removed_by_the_redactor(record: dict) -> bool:
    """No word of an expected name/address is left in what the redactor returns (beyond
    the times the same word occurs elsewhere in the text: a postcode's digits, a city)."""
    text = record["text"]
    left = _words_of(PSEUDONYM_RE.sub(" ", _REDACTOR.redact_text(text)))
    for span in record["spans"]:
        elsewhere = _words_of(text[: span["start"]] + " " + text[span["end"] :])
        if any(left[w] > elsewhere[w] for w in _words_of(span["value"])):
            return False
    return True


def test_the_challenge_set_covers_the_traffic_it_was_written_for():
    forms = Counter(r["form"].split("/")[0] for r in CHALLENGE_POSITIVES)
    cultures = {r["locale"].split("/")[0] for r in CHALLENGE_POSITIVES}
    formats = {r["locale"].split("/")[1] for r in CHALLENGE_POSITIVES if "/" in r["locale"]}
    assert len(CHALLENGE_POSITIVES) >= 800
    assert len(CHALLENGE_NEGATIVES) >= 150
    assert {"json", "crm", "ticket", "signature", "chat", "order", "list", "possessive"} <= set(
        forms
    )
    assert {"caps", "greeting", "title", "lower", "multiline", "label"} <= set(forms)
    assert {"indian", "turkish", "slavic", "nordic", "latam", "arabic", "east_asian"} <= cultures
    assert {"us", "uk", "de", "nl", "fr", "es", "it", "nordic"} <= formats
    for r in CHALLENGE_POSITIVES:
        for s in r["spans"]:
            assert r["text"][s["start"] : s["end"]] == s["value"]


def test_at_least_97_percent_of_challenge_names_and_addresses_are_removed_by_the_redactor():
    missed = [r["text"] for r in CHALLENGE_POSITIVES if not _removed_by_the_redactor(r)]
    assert 1 - len(missed) / len(CHALLENGE_POSITIVES) >= 0.97, missed


def test_at_least_97_percent_of_challenge_texts_without_personal_data_are_kept_as_sent():
    changed = [
        _REDACTOR.redact_text(r["text"])
        for r in CHALLENGE_NEGATIVES
        if _REDACTOR.redact_text(r["text"]) != r["text"]
    ]
    assert 1 - len(changed) / len(CHALLENGE_NEGATIVES) >= 0.97, changed


# ---------------------------------------------------------------------------- by form


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Hi, I am Omar Silva, my card was charged twice", "Omar Silva"),
        ("Refund approved for Ingrid Johansson after review.", "Ingrid Johansson"),
        ("Hello Aylin Y\u0131lmaz, your refund is on its way.", "Aylin Y\u0131lmaz"),
        ("Escalated: Priya Raghunathan wants a callback.", "Priya Raghunathan"),
        ("The parcel was signed for by Zbigniew Wójcik.", "Zbigniew Wójcik"),
        ("Customer Charlotte van Vliet reports a broken hinge.", "Charlotte van Vliet"),
        ("Ticket owner: María José García López.", "María José García López"),
        ("Spoke with Jukka Virtanen and Søren Kierkegaard today.", "Jukka Virtanen"),
        ("Spoke with Jukka Virtanen and Søren Kierkegaard today.", "Søren Kierkegaard"),
        ("Переведено от Ивана Петрова", "Ивана Петрова"),
        ("CUSTOMER NAME: OMAR SILVA", "OMAR SILVA"),
        ("URGENT - DANTE CRISPI WANTS A CALLBACK", "DANTE CRISPI"),
        ("If Omar Silva calls, refund him.", "Omar Silva"),
    ],
)
def test_a_full_name_is_found_without_any_cue(text, name):
    assert (PERSON, name) in _found(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Dear Ana,\nyour return label is attached.", "Ana"),
        ("Hi Bruno! The courier comes tomorrow.", "Bruno"),
        ("Hello Eszter, could you send a photo?", "Eszter"),
        ("Good morning Mehmet, the invoice is attached.", "Mehmet"),
        ("Hey Siobhan - quick question", "Siobhan"),
        ("hi ana, where is my parcel", "ana"),
    ],
)
def test_a_first_name_after_a_greeting_is_found(text, name):
    assert (PERSON, name) in _found(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("The screen is cracked.\nThanks, Ana", "Ana"),
        ("Please cancel it.\n\nBest regards,\nLuis Ortega", "Luis Ortega"),
        ("Cheers, Dmitri", "Dmitri"),
        ("Nothing else.\nKind regards\nAstrid", "Astrid"),
        ("Thank you!\nFatma", "Fatma"),
        ("Waiting for an answer.\n-- Ana Lima", "Ana Lima"),
    ],
)
def test_a_name_before_a_sign_off_is_found(text, name):
    assert (PERSON, name) in _found(text)


@pytest.mark.parametrize(
    "title",
    ["Mr.", "Mrs.", "Ms.", "Dr.", "Mr", "Mrs", "Herr", "Frau", "M.", "Mme", "Sr.", "Sra."],
)
def test_a_surname_after_a_title_is_found_without_the_title(title):
    text = f"Please call {title} Okonkwo about the warranty."
    assert _found(text) == [(PERSON, "Okonkwo")]


def test_a_particle_after_a_title_belongs_to_the_surname():
    assert _found("As discussed with Mrs. de Hoogh, the fee is waived.") == [(PERSON, "de Hoogh")]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Name on account: Silva, Omar", "Silva, Omar"),
        ("Cardholder (Nowak, Katarzyna) disputes the charge.", "Nowak, Katarzyna"),
        ("Customer: Velásquez, Marco Antonio", "Velásquez, Marco Antonio"),
        ("Customer: van Oirschot, Jasmijn", "van Oirschot, Jasmijn"),
    ],
)
def test_a_surname_comma_first_name_is_found(text, name):
    assert (PERSON, name) in _found(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("hi its ana lima here, my order is late", "ana lima"),
        ("hello my name is joão pereira and i need help", "joão pereira"),
        ("im petra novak and i was charged twice", "petra novak"),
        ("hey, ana here. can you reset my password", "ana"),
        ("this is giulia. the app keeps crashing", "giulia"),
    ],
)
def test_a_lower_case_name_after_a_self_introduction_is_found(text, name):
    assert (PERSON, name) in _found(text)


@pytest.mark.parametrize(
    "text",
    [
        "i am very upset about this",
        "this is urgent",
        "its broken again",
        "i am here to help",
        "i am happy to help",
        "Sorry about the double charge: a refund is on its way.",
        "One pass of an agent. Its evidence lives in its trace events.",
        "this is evidence of fraud",
    ],
)
def test_lower_case_words_after_an_introduction_cue_are_not_taken_for_names(text):
    assert _found(text) == []


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Ship it to 12 Elm Street, Apt 4 please.", "12 Elm Street, Apt 4"),
        ("I now live at 221 Baker St, London.", "221 Baker St"),
        ("New address: 4500 Sunset Boulevard Suite 300", "4500 Sunset Boulevard Suite 300"),
        ("Flat 3 Kingsley Road is the new one.", "Flat 3 Kingsley Road"),
        ("Bitte an Hauptstraße 12 liefern.", "Hauptstraße 12"),
        ("Neue Adresse: Berliner Str. 5a", "Berliner Str. 5a"),
        ("Mijn adres is Kerkstraat 7.", "Kerkstraat 7"),
        ("Stuur het naar Van der Veenlaan 3", "Van der Veenlaan 3"),
        ("Livrer au 12 rue de la Paix.", "12 rue de la Paix"),
        ("Livrer au 5, avenue Victor Hugo svp", "5, avenue Victor Hugo"),
        ("Consegna in Via Roma 12, grazie", "Via Roma 12"),
        ("Min adress är Storgatan 4.", "Storgatan 4"),
    ],
)
def test_a_street_address_with_a_house_number_is_found(text, address):
    assert (ADDRESS, address) in _found(text)


@pytest.mark.parametrize(
    "text",
    [
        "My Samsung Galaxy S23 arrived broken.",
        "The IKEA Billy shelf is missing screws.",
        "Apple Pay was declined on Monday.",
        "DHL Express and Royal Mail both lost it.",
        "Shipped from Paris to Berlin in March via UPS.",
        "Forwarded to the Fraud Prevention team.",
        "Refund of EUR 1,299.99 for order 55-1180-77 approved.",
        "Order ORD-2291 shipped on Friday 12 May.",
        "Please escalate to Tier 2 Support.",
        "Delivered to Charlotte hub on Tuesday.",
        "Our Customer Success team will follow up in August.",
        "Shelf 22, Zone North, Bay 7.",
        "Please refund to IBAN DE98 7043 4192 5412 2482 44 within 5 days.",
        "The Logitech MX3S mouse and the C3 cable.",
        "SELECT id FROM runs WHERE decided_at IS NULL",
        "ALTER TABLE traces_traceevent LEFT JOIN nothing",
        "    IF TG_OP = 'UPDATE' THEN\n        NEW.version := 1;\n    END IF;",
    ],
)
def test_non_personal_capitalised_words_are_left_alone(text):
    assert _found(text) == []
    assert _redact(text) == text


def test_a_name_stops_where_a_street_address_starts():
    # Were the name dropped for overlapping the address, redacting the address would
    # uncover it on the next pass.
    assert _found("Omar Silva Hauptstraße 12") == [
        (PERSON, "Omar Silva"),
        (ADDRESS, "Hauptstraße 12"),
    ]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Olá, sou a Beatriz Carvalho e preciso de ajuda", "Beatriz Carvalho"),
        ("Bonjour, je m'appelle Camille Laurent.", "Camille Laurent"),
        ("Hola, mi nombre es lucía fernández", "lucía fernández"),
        ("Guten Tag, mein Name ist Jürgen Hofmann.", "Jürgen Hofmann"),
        ("oi, me chamo joão silva", "joão silva"),
    ],
)
def test_self_introductions_in_other_languages_find_only_the_name(text, name):
    assert _found(text) == [(PERSON, name)]


@pytest.mark.parametrize("text", ["Es ist kalt heute.", "Rue 12 is closed.", "la rue 5 et Via 12"])
def test_introduction_verbs_and_lone_street_types_alone_find_nothing(text):
    assert _found(text) == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # a shouted name after a label, in a line that is not shouted
        ("Customer Name - ELIF KAYA", "ELIF KAYA"),
        # a possessive stays outside the name
        ("Refund for Declan O'Brien's second subscription.", "Declan O'Brien"),
        ("Omar Silva's order arrived with a broken seal.", "Omar Silva"),
        # a surname with an apostrophe, after a title or a first name
        ("Contract signed by Sig.ra O'Brien on 2 May.", "O'Brien"),
        ("Reporter: Connor O'Brien\nSeverity: 2", "Connor O'Brien"),
        # a name inside quotes (a tool result printed as a Python dict)
        ("get_user(42) => {'display_name': 'Olivia Reynolds', 'locale': 'en'}", "Olivia Reynolds"),
        # "my name's ..."
        ("customer> my name's callum and i was billed twice", "callum"),
        # someone addressed between a comma and an exclamation mark
        ("Thank you for your purchase, Haruto! Your order is being packed.", "Haruto"),
        # Vietnamese names, family name first
        ("Account owner changed to Nguyen Van An on request.", "Nguyen Van An"),
        ("Assigned to Le Minh Tuan (Tier 2).", "Le Minh Tuan"),
        ("Kind regards,\nTran Thi Mai", "Tran Thi Mai"),
        # an unknown first name before a known surname, after a word that says a person
        # follows
        ("Left a message for Minjun Choi re: overdue invoice.", "Minjun Choi"),
        ('{"assignee": "Minjun Choi", "priority": "high"}', "Minjun Choi"),
    ],
)
def test_names_in_agent_traffic_shapes_are_found(text, name):
    assert (PERSON, name) in _found(text)


def test_a_possessive_name_hashes_like_the_name():
    [span] = find_people_and_addresses("Omar Silva's order")
    assert span.normalized == "omar silva"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Send it to Flat 2, 61 Victoria Street, Edinburgh EH3 9DQ.", "Flat 2, 61 Victoria Street"),
        ("Unit 15, 65 Castle Mews, nobody home", "Unit 15, 65 Castle Mews"),
        ("Rahul Gupta\n5392 Sunset Blvd, #4\nRaleigh, NC 27601", "5392 Sunset Blvd, #4"),
        ("Ship to 3227 Maple Avenue #4 please", "3227 Maple Avenue #4"),
        ("Billing: 8369 W 4th Street\nBoise, ID 83702", "8369 W 4th Street"),
        ("SHIP TO:\n4616 W 4TH STREET\nPORTLAND, OR 97205", "4616 W 4TH STREET"),
        ("Order will be delivered to 221 Queensway, Leeds LS6 3QT.", "221 Queensway"),
        ("pickup failed at Nørrebrogade 158 B, nobody home", "Nørrebrogade 158 B"),
        ("Visited the customer at Prinsengracht 44 B this morning.", "Prinsengracht 44 B"),
        ("Billing: Calle de Alcalá 116, 2º C\n08007 Barcelona", "Calle de Alcalá 116, 2º C"),
        ("Please send the documents to Bygdøy allé 54, 0161 Oslo.", "Bygdøy allé 54"),
        ("pickup failed at Karl Johans gate 227, nobody home", "Karl Johans gate 227"),
        ("pickup failed at Strandvejen 42A, nobody home", "Strandvejen 42A"),
        ("Customer moved; new address: 181 bis allée des Tilleuls.", "181 bis allée des Tilleuls"),
        ("Billing: 169 bis, avenue Jean Jaurès\n33000 Bordeaux", "169 bis, avenue Jean Jaurès"),
        ("Billing: Via dei Mille, 224\n50122 Firenze", "Via dei Mille, 224"),
        ("Dirección: Calle Gran Vía 28, 4º izq", "Calle Gran Vía 28, 4º"),
    ],
)
def test_street_lines_in_more_formats_are_found_whole(text, address):
    assert (ADDRESS, address) in _found(text)


@pytest.mark.parametrize(
    "text",
    [
        "Heinz Tomato Ketchup was out of stock in the last delivery.",
        "Playing Minecraft Java Edition drains the battery fast.",
        "Bose SoundLink Flex arrived without a cable.",
        "Real Madrid jersey size M, printed number 7.",
        "Hilton Honors points were not credited.",
        "Golden Gate Bridge photo print arrived creased.",
        "Customer is travelling between Buenos Aires and Santiago.",
        "Our Denver office is closed on Monday for Labor Day.",
        "Order ORD-2291-77 total 89.90 EUR, VAT 15.35 EUR",
        "Build 4.12.0 Release Candidate deployed to Staging",
        "Ho Chi Minh City hub scanned the parcel.",
        "The Le Creuset casserole lid arrived chipped.",
        "Shipment from Long Beach port delayed.",
        "The Victoria Station kiosk is closed.",
        "Store opening in Kuala Lumpur pushed to spring.",
        "Escalated to Deutsche Telekom support.",
        "Travel with British Airways was cancelled.",
        "Thanks for choosing Premier Inn.",
        "Book a table for Valentine Dinner.",
    ],
)
def test_products_places_and_headings_that_look_like_names_are_left_alone(text):
    assert _found(text) == []


def test_the_structured_pii_corpus_holds_no_name_or_address():
    # Emails, phones, IBANs and cards in sentences: none of their parts is a name.
    texts = [r["text"] for r in _load("pii_corpus.jsonl")]
    assert [(t, _found(t)) for t in texts if _found(t)] == []


# ---------------------------------------------------------------------- normalisation


def _norm(text: str) -> list[str]:
    return [s.normalized for s in find_people_and_addresses(text)]


def test_spellings_of_one_person_hash_alike():
    forms = [
        "Customer Omar Silva wrote in.",
        "CUSTOMER NAME: OMAR SILVA",
        "Name on account: Silva, Omar",
        "hi its omar silva here",
    ]
    assert {tuple(_norm(t)) for t in forms} == {("omar silva",)}


def test_accents_and_letters_without_a_decomposition_are_folded():
    assert _norm("Customer José Łukasiewicz wrote in.") == ["jose lukasiewicz"]
    assert _norm("Customer Jose Lukasiewicz wrote in.") == ["jose lukasiewicz"]


def test_a_title_is_not_part_of_what_is_hashed():
    assert _norm("Please call Dr. Okonkwo.") == ["okonkwo"]


def test_an_address_is_hashed_case_insensitively():
    assert _norm("Ship to 12 Elm Street.") == ["12 elm street"]
    assert _norm("SHIP TO 12 ELM STREET.") == ["12 elm street"]


# ------------------------------------------------------------------------ gazetteer


def test_a_missing_gazetteer_is_a_clear_error_naming_the_command_that_builds_it(tmp_path):
    with pytest.raises(NamesDataMissing, match=r"python -m traces\.names_build"):
        Gazetteer.load(tmp_path / "names.tsv")


def test_an_empty_gazetteer_is_refused(tmp_path):
    path = tmp_path / "names.tsv"
    path.write_text("# header only\n", encoding="utf-8")
    with pytest.raises(NamesDataMissing, match="empty"):
        Gazetteer.load(path)


def test_the_builder_keeps_well_ranked_single_words_keyed_like_the_detector(tmp_path, monkeypatch):
    first = {
        "José": {"rank": {"ES": 3, "MX": 9}},
        "Rare": {"rank": {"US": names_build.MAX_RANK + 1}},
        "Ana Maria": {"rank": {"BR": 5}},
        "^m": {"rank": {"US": 2}},
        "Unranked": {"rank": {}},
    }
    last = {"Silva": {"rank": {"BR": 1}}, "JOSÉ": {"rank": {"ES": 400}}}
    src = tmp_path / "v3"
    src.mkdir()
    for fname, table in (("first_names.pkl.gz", first), ("last_names.pkl.gz", last)):
        with gzip.open(src / fname, "wb") as fh:
            pickle.dump(table, fh)
    monkeypatch.setattr(names_build, "_dataset_dir", lambda: src)
    out = tmp_path / "out" / "names.tsv"
    assert names_build.build(out) == 2
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()[1:]]
    assert rows == [["jose", "3", "400"], ["silva", "0", "1"]]
    gaz = Gazetteer.load(out)
    assert gaz.first == {"jose"}
    assert gaz.surname == {"jose", "silva"}


# ------------------------------------------------------------------------ properties

_TEXT = st.lists(
    st.one_of(
        st.sampled_from(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")),
        st.sampled_from(list(" ,.;:!?-'\n\t#/()<>")),
        st.sampled_from(["ß", "é", "Ł", "\u0131", "Ж", "Ω", "\u2019", "\u00a0", "\U0001f600"]),
        st.sampled_from(
            [
                "Omar ",
                "Silva",
                "Dear ",
                "Thanks, ",
                "Mr. ",
                "van ",
                "its ",
                "here",
                "12 ",
                "Street",
                "straße ",
                "rue ",
                "<PERSON:0a1b2c3d>",
                "<ADDRESS:deadbeef>",
                "<PERSON:0a1b2c3d4e5f6a7b8c9d>",
                "Hauptstraße 12",
                "Apt 4",
                "--\n",
            ]
        ),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_spans_are_sorted_disjoint_in_bounds_and_on_word_edges(text):
    spans = find_pii_spans = find_people_and_addresses(text)
    assert find_pii_spans == sorted(spans)
    prev_end = 0
    for span in spans:
        assert isinstance(span, Span)
        assert span.kind in (PERSON, ADDRESS)
        assert prev_end <= span.start < span.end <= len(text)
        assert span.normalized and span.normalized == span.normalized.strip()
        # A span starts and ends on a word character, so replacing it never splits a
        # character sequence or swallows the punctuation around it.
        assert text[span.start].isalnum() and text[span.end - 1].isalnum()
        prev_end = span.end


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_redaction_is_idempotent_and_leaves_pseudonyms_alone(text):
    once = _redact(text)
    assert _redact(once) == once
    for span in find_people_and_addresses(once):
        for tag in PSEUDONYM_RE.finditer(once):
            assert span.end <= tag.start() or span.start >= tag.end()
    # Pseudonyms already in the text come out unchanged.
    before = Counter(m.group() for m in PSEUDONYM_RE.finditer(text))
    after = Counter(m.group() for m in PSEUDONYM_RE.finditer(once))
    assert before <= after


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_redacted_text_is_still_accepted_by_the_strict_json_parser(text):
    body = json.dumps({"input": text, "output": _redact(text)}).encode()
    value = parse_json_body(body, max_bytes=1 << 20, max_depth=8)
    assert value["output"] == _redact(text)


# ------------------------------------------------------------------------ linear work


class _Work:
    """Counts the detector's Python-level steps: tokens looked at and gaps read."""

    def __init__(self, monkeypatch):
        self.steps = 0
        getitem = names._Tokens.__getitem__
        gap = names._Tokens.gap

        def counted_getitem(tokens, i):
            self.steps += 1
            return getitem(tokens, i)

        def counted_gap(tokens, i):
            self.steps += 1
            return gap(tokens, i)

        monkeypatch.setattr(names._Tokens, "__getitem__", counted_getitem)
        monkeypatch.setattr(names._Tokens, "gap", counted_gap)

    def of(self, text: str) -> int:
        self.steps = 0
        names.detect(text)
        return self.steps


@pytest.mark.parametrize(
    "unit",
    [
        "Omar Silva ",
        "Silva, Omar, ",
        "Mr. ",
        "Dear ",
        "Thanks,\n",
        "i am ana ",
        "12 Elm Street ",
        "Hauptstraße 12 ",
        "Ana van ",
        "van der ",
        "Иван Петров ",
        "OMAR SILVA ",
        "--\n",
        "ana here ",
    ],
)
def test_work_grows_linearly_with_adversarial_input(monkeypatch, unit):
    work = _Work(monkeypatch)
    small = work.of(unit * 2_000)
    large = work.of(unit * 8_000)
    assert large <= 4 * small + 100


@pytest.mark.parametrize(
    "unit",
    [
        "Le Minh ",
        "Nguyen Van ",
        "Flat 2, 61 ",
        "Karl Johans gate 12 ",
        "12 bis rue ",
        "O'Brien's ",
        ", Ana! ",
        "my name's ana ",
        "Vesterbrogade 196 B ",
        "Calle Mayor 12, 3º ",
        "6491 W 4th Street ",
        "Heinz Tomato Ketchup ",
    ],
)
def test_work_of_the_agent_traffic_rules_grows_linearly(monkeypatch, unit):
    # (A relative bound: near the end of a text the look-ahead is cut short, which four
    # short texts have four times; the per-unit work is what must not grow.)
    work = _Work(monkeypatch)
    small = work.of(unit * 2_000)
    large = work.of(unit * 8_000)
    assert small > 0
    assert large <= 4 * small * 1.01


def test_a_long_text_without_any_cue_is_not_scanned_at_all(monkeypatch):
    work = _Work(monkeypatch)
    assert work.of("a" * 100_000 + " lower case words only " * 1000) == 0
    assert work.of("ORD-2291-77 " * 5000) == 0
