"""Person names and street addresses in free text: a linear-time gazetteer + cue detector.

Pure module (no Django, no database): it is meant to run inside the gateway's redactor on
every stored string, next to traces/redaction.py's structured detectors.

    find_people_and_addresses(text) -> list[Span]      # Span(start, end, kind, normalized)

``kind`` is ``"PERSON"`` or ``"ADDRESS"``; ``text[start:end]`` is what to replace and
``normalized`` is what to hash, so that spellings of one person link (see `name_key`).

Why this design (bench/README.md "Names" has the measurements)
-------------------------------------------------------------
* A statistical NER (spaCy, Presidio on top of it) was measured on the same held-out set:
  lower recall on these texts (lower-case self-introductions, "Surname, First", names from
  outside its English training data), more brand names taken for people, ~100x the cost
  per string, and its only PyPI pipeline is a third-party re-upload of the model.
* What decides here is *evidence in the text* plus a name gazetteer:
  - a cue: a title ("Mr.", "Frau", "Mme", "Sr.", ...), a greeting ("Dear Ana,"), a sign-off
    ("Thanks, Ana" at the end of a line), a self-introduction ("hi its ana lima here",
    "my name is ...", "my name's ..."), someone addressed (", Haruto!"), or the
    "Surname, First" shape;
  - without a cue, two or more capitalised words of which the first is a known first name
    and the second a known name or surname ("Omar Silva"), which is what keeps
    "Samsung Galaxy", "Apple Pay" or "Fraud Prevention" out; words past the second must be
    names too, and a capitalised non-name right after the pair makes it a product, a place
    or a heading ("Heinz Tomato Ketchup", "Golden Gate Bridge", "Minecraft Java Edition");
    so does a capital inside a word ("SoundLink"), a place as second word ("Real Madrid")
    or a brand as first ("Hilton Honors");
  - Vietnamese names by their family name, from a short closed list ("Nguyen Van An");
  - a possessive ending stays outside a name ("Omar Silva's" is "Omar Silva");
  - street addresses by their shape: a house number and an English street type
    ("12 Elm Street, Apt 4", "W 4th Street", "85 Queensway"), a German/Dutch/Nordic street
    word and a number ("Hauptstraße 12", "Kerkstraat 5", "Karl Johans gate 17"), a
    French/Southern street type after a number ("12, rue de la Paix", "8 bis rue ...") or
    before one ("Via Roma 12"); the unit belongs to the line ("Flat 2, 61 Kings Road",
    "Maple Avenue #4", "Vesterbrogade 196 B", "Calle Mayor 12, 3º B").
* The gazetteer is derived at install time from names-dataset (traces/names_build.py):
  loading that package itself costs ~1.9 GB and 35 s, which no gunicorn worker can pay.
  The derived file is read once per process (`gazetteer`), and a missing file is a clear
  `NamesDataMissing` naming the command that builds it.
* Linear time: one tokenising regex without nested quantifiers over alternatives that can
  match the same text, then a left-to-right scan whose look-ahead is bounded by a constant
  (`_MAX_NAME_TOKENS`, `_MAX_STREET_TOKENS`).  Texts with no capital letter, no digit and
  no self-introduction cue return at once.
* Normalisation: casefolded, accents and marks stripped (NFKD), a few letters without a
  decomposition mapped (ł, ø, đ, dotless i, æ, œ, ß), whitespace collapsed; titles are outside the
  span; "Surname, First" is hashed as "first surname".  So "Omar Silva", "OMAR SILVA",
  "omar silva" and "Silva, Omar" link, and so do "José" and "Jose".  "Mr. Silva" hashes
  as "silva" and does not link to "omar silva": nothing in the text says it is the same
  person.

Not detected: a lone surname or first name without a cue ("Silva called"), names in
scripts without letter case after no cue, addresses without a house number or street
type ("Nad Plynovodem 239"), postcodes and cities (on their own they are not personal).
Over-detected: brands that are a person's name ("Calvin Klein"), and a first name followed
by a word names-dataset lists as a surname ("Victoria Secret", "Johnson Controls").
"""

from __future__ import annotations

import bisect
import re
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "ADDRESS",
    "DATA_PATH",
    "PERSON",
    "Gazetteer",
    "NamesDataMissing",
    "Span",
    "detect",
    "find_people_and_addresses",
    "gazetteer",
    "name_key",
    "use_gazetteer",
]

PERSON = "PERSON"
ADDRESS = "ADDRESS"

# Built by `python -m traces.names_build` (make install does it): inside the environment
# that holds names-dataset, so the data goes wherever the locked dependencies go.
DATA_PATH = Path(sys.prefix) / "share" / "autonomy-ladder" / "names.tsv"

# A first name counts on its own (no cue) up to this rank in some country of
# names-dataset; a surname up to this one.  Measured on tests/data/names_dev.jsonl.
FIRST_RANK = 5000
SURNAME_RANK = 5000


class Span(NamedTuple):
    start: int
    end: int
    kind: str  # PERSON | ADDRESS
    normalized: str


class NamesDataMissing(RuntimeError):
    """The derived name gazetteer is not where the detector looks for it."""


# ----------------------------------------------------------------------- normalising

_NO_DECOMPOSITION = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "\u0131": "i", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}
)


@lru_cache(maxsize=65536)
def name_key(word: str) -> str:
    """Casefolded, accents stripped: the form both the gazetteer and the hash use."""
    folded = word.casefold().translate(_NO_DECOMPOSITION)
    if folded.isascii():
        return folded
    return "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))


# ------------------------------------------------------------------------- gazetteer


class Gazetteer(NamedTuple):
    first: frozenset[str]
    surname: frozenset[str]

    @classmethod
    def load(cls, path: Path) -> Gazetteer:
        try:
            fh = path.open(encoding="utf-8")
        except FileNotFoundError:
            raise NamesDataMissing(
                f"name gazetteer {path} is missing: build it with "
                "`python -m traces.names_build` (make install does)"
            ) from None
        first: list[str] = []
        surname: list[str] = []
        with fh:
            for line in fh:
                if line.startswith("#"):
                    continue
                key, f, s = line.rstrip("\n").split("\t")
                if 0 < int(f) <= FIRST_RANK:
                    first.append(key)
                if 0 < int(s) <= SURNAME_RANK:
                    surname.append(key)
        if not first or not surname:
            raise NamesDataMissing(f"name gazetteer {path} is empty: rebuild it")
        return cls(frozenset(first), frozenset(surname))


_GAZETTEER: Gazetteer | None = None


def gazetteer() -> Gazetteer:
    """The process-wide gazetteer, loaded on first use.

    Call it at startup (before gunicorn forks, so workers share the pages) to fail early
    with `NamesDataMissing` rather than on the first request that holds a capital letter.
    """
    global _GAZETTEER
    if _GAZETTEER is None:
        _GAZETTEER = Gazetteer.load(DATA_PATH)
    return _GAZETTEER


def use_gazetteer(gaz: Gazetteer) -> None:
    """Detect with this gazetteer from now on (a bench or another environment's file)."""
    global _GAZETTEER
    _GAZETTEER = gaz
    _find_cached.cache_clear()


# ------------------------------------------------------------------------ word lists


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Keys are name_key() forms.  These are not tuned to any test text: they are the words a
# support conversation capitalises that names-dataset also lists as names (its data comes
# from social-network profiles, so "monday", "apple" or "berlin" are "names" there).

_NOT_NAMES = _words(
    """
    samsung apple ikea google amazon paypal visa mastercard amex klarna stripe dhl ups
    fedex usps hermes gls dpd postnl nike adidas sony philips bosch siemens xiaomi huawei
    lenovo nokia tesla netflix spotify uber zara lego nintendo canon nikon garmin dyson
    monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday
    january february march april may june july august september october november
    december christmas easter eve new year black cyber prime plus pro max mini ultra
    lite air pay team teams support service services customer customers client clients
    user users agent agents admin manager management operations ops desk office center
    centre hub department dept group unit squad billing finance accounting payments
    payment fraud prevention risk compliance legal security safety trust success quality
    assurance sales marketing logistics warehouse shipping delivery returns refund
    refunds order orders account accounts invoice invoices card cards bank ticket
    tickets case cases issue status pending approved declined failed active closed open
    note notes update summary hello hi hey dear thanks thank cheers regards best kind
    warm yours sincerely please sir madam madame all everyone there folks guys friend
    friends colleague colleagues the a an and or of to for in on at by from with via my
    your our their his her its this that these those it we you they he she i me us them
    mr mrs ms miss mx dr prof herr frau street road avenue station post mail express
    parcel package store shop north south east west northern southern eastern western
    central upper lower city town county state country region zone area europe european
    america american international national global royal general united app apps web
    online mobile phone email api gold silver bronze platinum premium standard basic
    enterprise business personal family home house garden kitchen model series edition
    signature creative cloud smart day days weekend edition release candidate version
    beta alpha preview stable build
    """
)

# Capitalised words that are places or organisations far more often than people; only
# consulted for names without a cue.
_PLACES = _words(
    """
    paris london berlin madrid rome roma milan milano lisbon lisboa amsterdam rotterdam
    utrecht brussels antwerp vienna wien zurich geneva munich hamburg frankfurt cologne
    koln stuttgart leipzig dresden prague praha warsaw krakow budapest bucharest athens
    istanbul ankara izmir moscow kyiv kiev oslo stockholm gothenburg copenhagen helsinki
    dublin belfast edinburgh glasgow manchester liverpool leeds bristol york lyon
    marseille nice toulouse bordeaux lille nantes barcelona valencia seville sevilla
    bilbao malaga florence firenze venice naples napoli turin torino bologna genoa
    mumbai delhi bangalore chennai kolkata hyderabad pune dubai doha cairo tokyo beijing
    shanghai shenzhen singapore sydney melbourne toronto vancouver montreal chicago
    boston houston denver phoenix seattle atlanta miami florida texas california israel
    india china japan germany france spain italy portugal poland sweden norway denmark
    finland ireland scotland wales england britain austria switzerland belgium
    netherlands holland greece turkey russia ukraine brazil mexico canada australia
    zealand africa asia sao são san santa santo saint st los las rio
    buenos aires kong kuala lumpur hanoi saigon jakarta manila bangkok
    seoul busan osaka kyoto taipei karachi lahore dhaka kathmandu colombo riyadh jeddah
    abu dhabi tehran baghdad beirut amman tel aviv nairobi lagos accra casablanca tunis
    algiers johannesburg cape durban lima bogota quito caracas montevideo
    asuncion havana panama costa rica puerto angeles vegas york dakota
    """
)
# Words that make the capitalised words before them a place ("Golden Gate Bridge").
_PLACE_NOUNS = _words(
    """
    airport station tower bridge hotel hospital university school college museum
    stadium arena cathedral library building centre center mall market
    """
)
# Second words that make a pair a place ("Long Beach", "Palm Springs", "Victoria Station").
_GEO_SECOND = _words(
    "beach bay island islands valley springs falls heights harbor harbour airport station"
)
# A nationality before a word makes a company or a thing ("Deutsche Telekom", "Swiss Re").
_DEMONYMS = _words(
    """
    american british english scottish welsh irish deutsche deutscher french
    swiss dutch belgian austrian italian spanish portuguese swedish norwegian danish
    finnish polish czech turkish greek russian chinese japanese korean indian canadian
    australian mexican brazilian argentine european asian african nordic scandinavian
    """
)
# Second words (or words right after a pair) that name an organisation or an event.
_ORG_WORDS = _words(
    """
    inn hotels airways airlines bank banking group holdings motors foods labs insurance
    energy media systems solutions consulting partners capital pharma telecom telekom
    networks software technologies industries inc ltd llc gmbh plc corp co company
    dinner lunch breakfast party festival awards foundation
    """
)
# Brands that names-dataset also lists as names: only consulted for names without a cue
# ("Dear Hilton" is still a greeting).
_BRANDS = _words(
    """
    hilton marriott hyatt sheraton westin ritz kraft heinz nestle kellogg mars ferrero
    cadbury gucci prada armani versace chanel dior ford chrysler dodge ferrari porsche
    lamborghini maserati bentley boeing disney walmart costco tesco aldi lidl asda
    macys nordstrom hp acer asus oracle cisco intel nvidia
    salesforce shopify zendesk hubspot twilio slack zoom dropbox airbnb expedia
    booking lufthansa emirates qatar ryanair easyjet vodafone verizon orange
    """
)

_TITLES = _words(
    """
    mr mrs ms miss mx dr prof herr frau m mme mlle sr sra srta sig dott pan pani
    monsieur madame mademoiselle senor senora senorita signor signora signorina senhor
    senhora dona don dhr mevr mevrouw meneer fru hr bay bayan
    """
)
_GREETINGS = _words(
    """
    dear hi hello hey hallo liebe lieber bonjour hola ciao ola hej hei moi merhaba czesc
    ahoj dag beste querido querida caro cara estimado estimada morning afternoon evening
    """
)
_SIGNOFFS = _words(
    """
    thanks thank thx cheers regards best sincerely yours cordialement saludos grusse
    gruss gruesse mfg groetjes hilsen halsningar mvh pozdrawiam sayg\u0131lar\u0131mla
    saygilarimla cumprimentos atenciosamente saluti
    """
)
# Words that end a self-introduction cue ("my name is", "i am", "its", "this is", ...).
_INTRO_LAST = _words(
    """
    is am im i'm it's its soy sou bin suis sono ben jestem llamo chiamo chamo heter name's
    m'appelle ist es
    """
)
_PARTICLES = _words(
    """
    van von der den de del della dei degli delle di da das dos do du la le ten ter bin ibn al
    el zu t
    """
)
# Lower-case words that are never part of a name typed in lower case.
_FUNCTION = _words(
    """
    a an and or but the of to for in on at by from with here there again too also just
    still not no yes very so really please help i me my we our you your it is am are was
    were be been have has had do does did can could would will shall should may might
    must this that these those what when where who why how if then than as about
    im i'm it's its ive i've id i'd ill i'll
    contacting writing calling back new order account card refund sorry glad happy
    je ich io yo eu ik jag jeg mi mein meine mon ma meu minha mijn
    """
)

# Everyday lower-case words that names-dataset also lists as first names or surnames
# ("happy", "way", "hope", "frank"): in lower-case text, where capitals give no evidence,
# they are never taken for a name.
_COMMON_WORDS = _words(
    """
    happy sorry glad sure fine grace hope will still great late way done good bad ok okay
    able new just honest major lucky sunny precious blessing gift love star been ready back
    true wrong old also well best next last first second same real free right left long
    short big small high low close sent paid due fast slow safe clear busy nice kind dear
    sweet cool hot cold warm young rich poor single early soon only even more most much
    many less least own other another such both each every few some any any none one two
    three four five ten hundred thousand day night week month year time today morning home
    work job money cash price cost fee bill pay charge charged double twice once again
    ever never always often usually finally actually really truly maybe perhaps please
    thanks hello hi bye call called calling mail post page book story case issue problem
    error order item items box parcel package delivery shipping stuck lost broken missing
    damaged wrong changed moved living staying coming going getting waiting trying asking
    writing looking following checking hoping wondering frustrated upset angry confused
    worried disappointed tired back away down up out over under about around little
    frank jade rose dawn april may june august summer winter autumn spring king queen
    prince joy faith patience charity mercy honor honour earl duke bishop
    """
)

# English street types (USPS suffixes and common abbreviations), lower-cased.
_EN_STREET_TYPES = _words(
    """
    street st road rd avenue ave av lane ln drive dr boulevard blvd court ct place pl
    square sq terrace ter terr way close crescent cres grove gardens gdns mews row walk
    parade hill park parkway pkwy highway hwy circle cir trail trl alley aly annex
    arcade bypass camp canyon cape causeway center centre cliff cliffs club common
    commons corner corners course courts cove coves creek crest crossing crossroad curve
    dale dam divide drives estate estates expressway extension extensions fall falls
    ferry field fields flat flats ford fords forest forge forges fork forks fort freeway
    garden gateway glen glens green greens groves harbor harbors haven heights hills
    hollow inlet island islands isle junction junctions key keys knoll knolls lake lakes
    land landing light lights loaf lock locks lodge loop mall manor manors meadow
    meadows mill mills mission motorway mount mountain mountains neck orchard oval
    overpass parks parkways pass passage path pike pine pines plain plains plaza point
    points port ports prairie radial ramp ranch rapid rapids rest ridge ridges river
    roads route run shoal shoals shore shores skyway spring springs spur spurs squares
    station stravenue stream streets summit terraces throughway trace track trafficway
    tunnel turnpike underpass union unions valley valleys via viaduct view views village
    villages ville vista wall ways well wells burg burgs branch bridge brook brooks
    bluff bluffs bottom bend
    """
)
# Units before or after an English street line.
_UNITS = frozenset(
    [
        "apt",
        "apartment",
        "suite",
        "ste",
        "unit",
        "flat",
        "studio",
        "floor",
        "fl",
        "room",
        "rm",
        "no",
    ]
)
# Endings of a one-word street name in German, Dutch, Scandinavian, Finnish, Czech.
_STREET_SUFFIXES = (
    "strasse", "str", "weg", "gasse", "allee", "platz", "ring", "damm", "ufer", "chaussee",
    "steig", "pfad", "markt", "berg", "graben", "wall", "laan", "straat", "gracht", "plein",
    "kade", "singel", "dijk", "dreef", "hof", "pad", "steeg", "baan", "park", "boulevard", "gatan",
    "gata", "vagen", "vag", "grand", "stigen", "veien", "veg", "gata", "vej", "gade", "alle",
    "tie", "katu", "polku", "kuja", "trida", "namesti", "vejen", "gaden", "vegen", "stien",
    "plassen", "torget",
)  # fmt: skip
# Street types written before the name: "rue de la Paix", "Via Roma", "Calle Mayor".
_PREFIX_STREET_TYPES = _words(
    """
    rue avenue boulevard bd chemin allee impasse quai place cours passage route square
    via viale piazza corso vicolo largo calle avenida plaza paseo carrer rua travessa
    praca ul ulica aleja al
    """
)

_ANY_DIGIT = re.compile(r"\d")

# A word: letters, joined by single hyphens or apostrophes ("Jean-Pierre", "O'Brien").
# A number: digits with an optional letter and "-"/"/" parts ("12a", "1-8", "1/8").
# "<___>" is a masked value (traces/redaction.py masks pseudonyms and what it found
# before calling this module): one opaque token.
# A number glued to a word on its right ("12Hauptstraße") or to a pseudonym ("12<ADDRESS:…>")
# is no number token at all (possessive, so it cannot shrink into one either): what a
# redacted text looks like next to a number must not change what is found there.
_TOKEN = re.compile(
    r"<_++>|[^\W\d_]+(?:[-'\u2019][^\W\d_]+)*"
    r"|\d++(?:[-/]\d++)*+(?:[sS][tT]|[nN][dD]|[rR][dD]|[tT][hH]|[^\W\d_])?+(?![^\W\d_<])"
)
# The same for ASCII text, where plain ranges are matched much faster than Unicode classes.
_TOKEN_ASCII = re.compile(
    r"<_++>|[A-Za-z]+(?:[-'][A-Za-z]+)*|[0-9]++(?:[-/][0-9]++)*+"
    r"(?:[sS][tT]|[nN][dD]|[rR][dD]|[tT][hH]|[A-Za-z])?+(?![A-Za-z<])"
)

_POSSESSIVE_ENDINGS = frozenset(["'s", "\u2019s"])
# Capitalised contractions that are no possessive of a name ("It's", "Name's").
_NOT_POSSESSIVE = _words(
    "it that what there here who where how let he she name everyone everything today"
)

_MAX_NAME_TOKENS = 4
_MAX_STREET_TOKENS = 5


class _Tok(NamedTuple):
    start: int
    end: int
    text: str
    key: str  # name_key(text) for words, "" for numbers
    low: str  # casefolded, accents kept: what the stop lists are checked against
    cap: bool  # starts with an upper-case letter
    caps: bool  # all upper case, more than one letter
    num: bool


def _make_tok(t: str, start: int, end: int) -> _Tok:
    if t[0].isdigit():
        return _Tok(start, end, t, "", "", False, False, True)
    if t.islower() and t.isascii():
        return _Tok(start, end, t, t, t, False, False, False)
    return _Tok(
        start, end, t, name_key(t), t.casefold(), t[0].isupper(), len(t) > 1 and t.isupper(), False
    )


class _Tokens:
    """The text's tokens, each built on first access.

    Splitting a text into words is one C-level regex pass; building the per-word details
    (`_Tok`) costs ~20x more in Python, and the rules only ever look at the few words
    around a capitalised word, a cue or a number.  So words are kept as plain strings and
    spans, and a `_Tok` is built the first time a rule looks at it.
    """

    __slots__ = ("built", "spans", "text", "words")

    def __init__(self, text: str) -> None:
        matches = list((_TOKEN_ASCII if text.isascii() else _TOKEN).finditer(text))
        self.text = text
        self.words = [m.group() for m in matches]
        self.spans = [m.span() for m in matches]
        self.built: list[_Tok | None] = [None] * len(matches)

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, i: int) -> _Tok:
        tok = self.built[i]
        if tok is None:
            spans = self.spans
            start, end = spans[i]
            word = self.words[i]
            if word[0] == "<":
                # A masked value (a pseudonym, or an email found in this very text): a
                # word of its own that no rule takes for a name, a title or a cue, so
                # that the words around it read as they did before it was masked.
                tok = _Tok(start, end, word, "", "", False, False, False)
            elif not word[0].isdigit() and (
                (i + 1 < len(spans) and spans[i + 1][0] == end) or (i and spans[i - 1][1] == start)
            ):
                # A word glued to a number ("DE98", "MX3S", "C3") is part of an identifier:
                # no rule may take it for a name, a title or a cue.
                tok = _Tok(start, end, word, "", "", False, False, False)
            elif (
                word[-2:] in _POSSESSIVE_ENDINGS
                and word[0].isupper()
                and len(word) > 3
                and word[:-2].casefold() not in _NOT_POSSESSIVE
            ):
                # "Omar Silva's order", "O'Brien's": the name without its possessive
                # ending, which stays outside the span (and outside what is hashed).
                tok = _make_tok(word[:-2], start, end - 2)
            else:
                tok = _make_tok(word, start, end)
            self.built[i] = tok
        return tok

    def range(self, i: int, j: int) -> list[_Tok]:
        return [self[k] for k in range(i, j)]

    def gap(self, i: int) -> str:
        """The text between token i-1 and token i (from the start for i == 0)."""
        return self.text[self.spans[i - 1][1] if i else 0 : self.spans[i][0]]


# ------------------------------------------------------------------------- detection


def find_people_and_addresses(text: str) -> list[Span]:
    """Spans of person names and street addresses in ``text``, sorted, non-overlapping.

    Short texts are memoised (the same status line or agent phrase recurs in every body).
    Raises `NamesDataMissing` if the gazetteer has not been built.
    """
    if len(text) <= 512:
        return list(_find_cached(text))
    return detect(text)


@lru_cache(maxsize=8192)
def _find_cached(text: str) -> tuple[Span, ...]:
    return tuple(detect(text))


def detect(text: str) -> list[Span]:
    """`find_people_and_addresses` without its memo (what the bench measures)."""
    # Cheap pre-checks, so that ids, statuses, amounts and most sentences cost a regex or
    # two.  Each accepts a superset of what the scan could find.  A person needs two
    # capitalised words in a row (a name, "Surname, First", "Mr. Silva", "Dear Ana",
    # "Thanks, Ana") or a cue word for a lone or lower-case name; an address needs a
    # digit and a word that names a street type.
    # Every rule needs a space or a line break between two words: ids, keys, statuses,
    # dates and amounts (most strings in a gateway body) stop here.
    if " " not in text and "\n" not in text:
        return []
    if text.isascii():
        pair = _CAPITALISED_PAIR_ASCII.search(text) is not None
    else:
        pair = text != text.lower()  # no cheap exact check outside ASCII: scan it
    digit = _ANY_DIGIT.search(text) is not None
    words: list[str] = []
    if digit or not pair:
        words = (_WORDS_ASCII if text.isascii() else _WORDS).findall(text.lower())
    people = (
        pair
        or _has_cue(words)
        or "--" in text
        or "\u2014" in text
        or ("!" in text and ", " in text)  # "Thanks for your order, Haruto!"
    )
    addresses = digit and (
        not _STREET_WORDS.isdisjoint(words) or any(w.endswith(_STREET_SUFFIXES_RAW) for w in words)
    )
    if not people and not addresses:
        return []
    return _find(text, gazetteer(), people=people, addresses=addresses)


# (Tried only where a word starts, and possessive: a long run of capitals or spaces must
# not be re-scanned from each of its characters.)
def _has_cue(words: list[str]) -> bool:
    if _CUE_SET.isdisjoint(words):
        return False
    found = _CUE_SET.intersection(words)
    # "is", "am", "ist", "es" are cues only in "this is", "name is", "i am", "name ist",
    # "nombre es".
    if found <= {"is", "am", "ist", "es"}:
        ws = set(words)
        return (
            ("is" in found and ("this" in ws or "name" in ws))
            or ("am" in found and "i" in ws)
            or ("ist" in found and "name" in ws)
            or ("es" in found and "nombre" in ws)
        )
    return True


_CAPITALISED_PAIR_ASCII = re.compile(
    r"(?<![\w.-])(?<!\w['\u2019])[A-Z][A-Za-z'\u2019.-]*+,? ++"
    r"(?:(?:van|von|de|der|den|del|della|di|da|das|dos|du|la|le|ten|ter|bin|ibn|al|el|zu|'t)"
    r" ++){0,3}[A-Z][A-Za-z'\u2019]"
)
_WORDS = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
_WORDS_ASCII = re.compile(r"[a-z]+(?:'[a-z]+)*")


def _find(text: str, gaz: Gazetteer, *, people: bool = True, addresses: bool = True) -> list[Span]:
    toks = _Tokens(text)
    if not toks.words:
        return []
    scan = _Scan(text, toks, gaz)
    found_addresses = scan.addresses() if addresses else []
    found_people = scan.people() if people else []
    return _resolve(found_addresses, found_people)


def _resolve(addresses: list[Span], people: list[Span]) -> list[Span]:
    # Addresses first (a street named after a person stays one address), then people;
    # within a kind the earliest, then the longest, wins.  Both lists come out of
    # left-to-right scans, so a sort and one pass each keep this O(n log n).
    kept: list[Span] = []
    last_end = -1
    for span in sorted(addresses, key=lambda s: (s.start, -s.end)):
        if span.start >= last_end:
            kept.append(span)
            last_end = span.end
    starts = [s.start for s in kept]
    out = list(kept)
    last_end = -1
    for span in sorted(people, key=lambda s: (s.start, -s.end)):
        if span.start < last_end:
            continue
        k = bisect.bisect_left(starts, span.end)
        # The address starting last before this span's end must end before it starts.
        if k > 0 and kept[k - 1].end > span.start:
            continue
        out.append(span)
        last_end = span.end
    out.sort()
    return out


class _Scan:
    def __init__(self, text: str, toks: _Tokens, gaz: Gazetteer) -> None:
        self.text = text
        self.toks = toks
        self.first = gaz.first
        self.surname = gaz.surname
        # Tokens inside a street address: a name never extends into one ("Omar
        # Hauptstraße 12"), or redacting the address would uncover the name next time.
        self.in_address: set[int] = set()
        # Token index just past the last person found (people() keeps it).
        self.resume = 0

    # -- helpers

    def gap(self, i: int) -> str:
        return self.toks.gap(i)

    def _opens_sentence(self, k: int) -> bool:
        """Token k is the first word of the text, a line or a sentence."""
        if k == 0:
            return True
        gap = self.gap(k)
        return any(mark in gap for mark in ".!?:;\n")

    def is_first(self, t: _Tok) -> bool:
        return t.key in self.first or (
            "-" in t.key and all(p in self.first for p in t.key.split("-"))
        )

    def is_name(self, t: _Tok) -> bool:
        key = t.key
        if key in self.first or key in self.surname:
            return True
        if "'" in key or "\u2019" in key:
            # The gazetteer keeps "O'Brien", "D'Angelo" without the apostrophe.
            key = key.replace("'", "").replace("\u2019", "")
            if key in self.surname or key in self.first:
                return True
        return "-" in key and all(p in self.first or p in self.surname for p in key.split("-") if p)

    def name_word(self, t: _Tok, lower_ok: bool) -> bool:
        """Could this token be part of a name that a cue (or a first name) has opened?"""
        if t.num or t.low in _NOT_NAMES or len(t.key) < 2:
            return False
        if t.caps:
            return self.is_name(t)
        if t.cap:
            return True
        return (
            lower_ok and t.low not in _FUNCTION and t.low not in _COMMON_WORDS and self.is_name(t)
        )

    def run(
        self, i: int, lower_ok: bool = False, limit: int = _MAX_NAME_TOKENS, particle_first=False
    ) -> int:
        """End (exclusive token index) of the name starting at token i; i if none."""
        toks = self.toks
        j = i
        while j < len(toks) and j - i < limit:
            t = toks[j]
            if j > i and (self.gap(j) != " " or _is_title(self, j) or j in self.in_address):
                break
            if self.name_word(t, lower_ok):
                j += 1
                continue
            # "Charlotte van Vliet", "Benício da Cunha", "STIJN VAN DOOREN": a particle
            # inside a name (or opening one after a title: "Mr. van Asten").
            if (j > i or particle_first) and t.key in _PARTICLES and (not t.cap or t.caps):
                # "van der", "de la", "von und zu": up to three particles, then a name.
                k = j
                while k < len(toks) and k - j < 3 and toks[k].key in _PARTICLES:
                    if k > j and self.gap(k) not in (" ", " '", " \u2019"):
                        break  # (" '" is Dutch "van 't Hof")
                    k += 1
                if (
                    k < len(toks)
                    and self.gap(k) == " "
                    and toks[k].cap
                    and self.name_word(toks[k], False)
                ):
                    j = k
                    continue
            break
        return j

    def person(self, i: int, j: int, reverse: bool = False) -> Span:
        toks = self.toks
        keys = [t.key for t in toks.range(i, j)]
        return Span(toks[i].start, toks[j - 1].end, PERSON, " ".join(keys))

    def prev_keys(self, i: int, n: int) -> tuple[str, ...]:
        """name_key of up to n tokens before i that are joined by spaces/apostrophes only."""
        out: list[str] = []
        k = i - 1
        while k >= 0 and len(out) < n:
            if "<" in self.gap(k + 1):
                # A masked value (a pseudonym) stands between: the words around it were
                # not next to each other when it was still text, so they are not now.
                break
            out.insert(0, self.toks[k].key)
            if k == 0 or not _is_space_gap(self.gap(k)):
                break
            k -= 1
        return tuple(out)

    # -- people

    def people(self) -> list[Span]:
        words = self.toks.words
        n = len(words)
        # Every rule starts at a capitalised word, a cue word, a word right before "here"
        # or after a "--" line; nothing else is looked at.
        starts = [i for i, w in enumerate(words) if not w.islower() or w in _CUE_WORDS]
        if "here" in words:
            starts += [i for i in range(n - 1) if words[i + 1] == "here"]
        if "--" in self.text or "—" in self.text:
            starts += [i for i in range(n) if "--" in self.gap(i) or "—" in self.gap(i)]
        if len(starts) > 1:
            starts = sorted(set(starts))
        text = self.text
        spans = self.toks.spans
        found: list[Span] = []
        resume = self.resume = 0
        for i in starts:
            w = words[i]
            if i < resume or w[0].isdigit() or i in self.in_address:
                continue
            # Each rule is tried only where its first word fits (checked on the plain word,
            # which is much cheaper than building its token).
            low = w.lower() if w.isascii() else name_key(w)
            span = None
            if low in _TITLES:
                span = self.after_title(i)
            if span is None and low in _GREETINGS:
                span = self.after_greeting(i)
            if span is None:
                span = self.after_signoff(i)
            if span is None and low in _INTRO_LAST:
                span = self.after_intro(i)
            if span is None and w[0].isupper() and i + 1 < n:
                nxt = words[i + 1]
                if nxt[0].isupper() or nxt in _PARTICLES:
                    span = self.reversed_name(i) or self.full_name(i) or self.vietnamese(i)
            if span is None and i + 1 < n and words[i + 1] == "here":
                span = self.before_here(i)
            if span is None and w[0].isupper() and i > 0 and text.startswith(", ", spans[i][0] - 2):
                span = self.vocative(i)
            if span is not None:
                found.append(span[0])
                resume = self.resume = span[1]
        return found

    def after_title(self, i: int) -> tuple[Span, int] | None:
        t = self.toks[i]
        if not t.cap or t.caps or t.key not in _TITLES or i + 1 >= len(self.toks):
            return None
        gap = self.gap(i + 1)
        if gap not in (" ", ". ", "."):
            return None
        if t.key == "m" and gap != ". ":
            return None  # "M. Dupont", never a lone "M"
        # "Sig.ra Rossi": the title's own ending.
        k = i + 1
        if gap == "." and self.toks[k].key in ("ra", "ssa"):
            if k + 1 >= len(self.toks) or self.gap(k + 1) != " ":
                return None
            k += 1
        elif gap == ".":
            return None
        if not self.toks[k].cap and self.toks[k].key not in _PARTICLES:
            return None
        j = self.run(k, particle_first=True)
        if j == k:
            return None
        return self.person(k, j), j

    def after_greeting(self, i: int) -> tuple[Span, int] | None:
        t = self.toks[i]
        if t.key not in _GREETINGS or i + 1 >= len(self.toks):
            return None
        if t.key in ("morning", "afternoon", "evening") and self.prev_keys(i, 1) != ("good",):
            return None
        gap = self.gap(i + 1)
        if gap not in (" ", ", ", ","):
            return None
        k = i + 1
        nxt = self.toks[k]
        if nxt.low in _NOT_NAMES or nxt.key in _GREETINGS or nxt.key in _INTRO_LAST:
            return None  # ("Olá, sou a Beatriz": the introduction names her)
        if not nxt.cap and not (
            self.is_first(nxt) and nxt.low not in _FUNCTION and nxt.low not in _COMMON_WORDS
        ):
            return None
        j = self.run(k, lower_ok=not nxt.cap)
        if j == k:
            return None
        return self.person(k, j), j

    def after_signoff(self, i: int) -> tuple[Span, int] | None:
        toks = self.toks
        w = toks.words[i]
        if (w.lower() if w.isascii() else name_key(w)) not in _SIGNOFFS:
            gap = self.gap(i)
            if "--" not in gap and "—" not in gap:
                return None
        t = toks[i]
        k = i + 1
        if t.key in _SIGNOFFS:
            if t.key == "thank" and k < len(toks) and toks[k].key == "you":
                k += 1
            if k >= len(toks):
                return None
            gap = self.gap(k)
            if not _SIGNOFF_GAP.fullmatch(gap) or (" " not in gap and "\n" not in gap):
                return None
        else:
            # "-- Ana Lima" on its own: a dash line before the name.
            gap = self.gap(i)
            if ("--" not in gap and "\u2014" not in gap) or (" " not in gap and "\n" not in gap):
                return None
            k = i
        if not toks[k].cap or toks[k].low in _NOT_NAMES:
            return None
        j = self.run(k)
        if j == k:
            return None
        # A sign-off name ends its line (or is followed by a comma: "Thanks Ana, bye").
        after = self.text[toks[j - 1].end : toks[j].start] if j < len(toks) else ""
        if j < len(toks) and "\n" not in after and not after.startswith(","):
            return None
        return self.person(k, j), j

    def after_intro(self, i: int) -> tuple[Span, int] | None:
        toks = self.toks
        t = toks[i]
        if t.key not in _INTRO_LAST or i + 1 >= len(toks):
            return None
        before = self.prev_keys(i, 2)
        ok = (
            t.key
            in ("im", "i'm", "it's", "its", "soy", "sou", "suis", "sono", "ben", "jestem", "heter")
            or t.key in ("m'appelle", "m\u2019appelle")
            or (t.key == "ist" and before[-1:] == ("name",))
            or (t.key == "es" and before[-1:] == ("nombre",))
            or (t.key == "am" and before[-1:] == ("i",))
            or (t.key == "is" and before[-1:] in (("name",), ("this",)))
            or (t.key == "bin" and before[-1:] == ("ich",))
            or (t.key == "name's" and before[-1:] == ("my",))
            or (t.key in ("llamo", "chiamo", "chamo") and before[-1:] in (("me",), ("mi",)))
        )
        if not ok:
            return None
        # "its"/"im" introduce someone only at the start of a clause ("hi its ana",
        # "Hello, im Ana"), not inside one ("a refund is on its way").
        if (
            t.key in ("its", "it's", "im", "i'm")
            and i > 0
            and not _CLAUSE_START.fullmatch(self.gap(i))
            and toks[i - 1].key not in _GREETINGS
        ):
            return None
        gap = self.gap(i + 1)
        if gap not in (" ", ", "):
            return None
        k = i + 1
        if t.key == "sou" and toks[k].key in ("a", "o") and k + 1 < len(toks):
            if self.gap(k + 1) != " ":
                return None
            k += 1  # "sou a Beatriz", "sou o João"
        nxt = toks[k]
        if nxt.num or nxt.low in _NOT_NAMES or nxt.low in _FUNCTION:
            return None
        # In lower case only a known name that is no everyday word opens a name.
        if not nxt.cap and (nxt.low in _COMMON_WORDS or not self.is_name(nxt)):
            nxt2 = toks[k + 1] if k + 1 < len(toks) and self.gap(k + 1) == " " else None
            if nxt.low in _COMMON_WORDS or nxt2 is None or nxt2.key != "here":
                return None
        # The first word must be a known name ("i am very upset", "this is Amazon" are
        # not), unless the introduction closes right after it ("its warinder here").
        nxt2 = toks[k + 1] if k + 1 < len(toks) and self.gap(k + 1) == " " else None
        if not (self.is_name(nxt) or (nxt.cap and nxt2 is not None and self.is_name(nxt2))):
            # ("its broken again" is not one: a lower-case word counts before "here" only.)
            closing = ("here", "again") if nxt.cap else ("here",)
            if nxt2 is None or nxt2.key not in closing or not nxt.text.isalpha():
                return None
            return self.person(k, k + 1), k + 1
        j = self.run(k, lower_ok=True)
        if j == k:
            return None
        # "hi i am roman malacarne", "anna maria szemraj": after known names, one more
        # lower-case word that is no function word is the surname, known or not.
        if (
            not nxt.cap
            and j - k < _MAX_NAME_TOKENS
            and j < len(toks)
            and self.gap(j) == " "
            and _is_lower_surname(toks[j])
        ):
            j += 1
        # A lower-case name must close the introduction ("this is giulia.", "i am ana
        # and ...", "its ana lima here"): "this is evidence of ...", "Its evidence lives
        # in ..." are no names.
        if not nxt.cap and j < len(toks):
            after = self.gap(j)
            if after == " " and toks[j].key not in _AFTER_A_LOWER_NAME:
                return None
        return self.person(k, j), j

    def vietnamese(self, i: int) -> tuple[Span, int] | None:
        # "Nguyen Van An", "Le Minh Tuan": family name first, from a short closed list,
        # then one or two given names (short syllables).  The family names that are also
        # everyday words elsewhere ("Le", "Do", "Ho") need two given names, and no
        # capitalised word may follow ("Ho Chi Minh City").
        toks = self.toks
        t = toks[i]
        if t.key not in _VI_FAMILY or t.caps != (len(t.text) > 1 and t.text.isupper()):
            return None
        need = 2 if t.key in _VI_AMBIGUOUS else 1
        j = i + 1
        while j < len(toks) and j - i <= 3 and self.gap(j) == " ":
            w = toks[j]
            if not w.cap or w.caps != t.caps or len(w.key) > 6 or not w.key.isalpha():
                break
            # (After the first given name any short word counts: "Nguyen Van An".)
            if (j == i + 1 or need == 2) and (
                w.low in _NOT_NAMES or w.low in _PLACES or w.low in _FUNCTION
            ):
                break
            j += 1
        if j - i - 1 < need:
            return None
        if j < len(toks) and self.gap(j) == " " and toks[j].cap:
            return None
        if t.caps and not self._shouted(i):
            return None
        return self.person(i, j), j

    def vocative(self, i: int) -> tuple[Span, int] | None:
        # "Thank you for your order, Haruto!", "Welcome back, Ana Lima!": a known first
        # name between a comma and an exclamation mark is someone being addressed.
        toks = self.toks
        if self.gap(i) != ", ":
            return None
        t = toks[i]
        if t.caps or not self.is_first(t) or t.low in _NOT_NAMES or t.low in _PLACES:
            return None
        if t.low in _FUNCTION or t.low in _COMMON_WORDS:
            return None
        j = self.run(i, limit=3)
        if j == i or not self.text.startswith("!", toks[j - 1].end):
            return None
        return self.person(i, j), j

    def before_here(self, i: int) -> tuple[Span, int] | None:
        # "hey, ana here", "Ana Lima here": a name right before "here" at a clause start.
        toks = self.toks
        if i > 0 and not (_CLAUSE_START.fullmatch(self.gap(i))):
            return None
        t = toks[i]
        if not self.is_first(t) or t.low in _NOT_NAMES or t.low in _FUNCTION:
            return None
        if not t.cap and t.low in _COMMON_WORDS:
            return None
        j = self.run(i, lower_ok=True, limit=3)
        if j == i or j >= len(toks) or toks[j].key != "here" or self.gap(j) != " ":
            return None
        return self.person(i, j), j

    def reversed_name(self, i: int) -> tuple[Span, int] | None:
        # "Silva, Omar", "van Oirschot, Jasmijn", "Velásquez, Marco Antonio": a capitalised
        # word, a comma, then a known first name (or two) closing the name.
        toks = self.toks
        n = len(toks)
        if i + 1 >= n:
            return None
        last, first = toks[i], toks[i + 1]
        if self.gap(i + 1) != ", " or not last.cap or not first.cap:
            return None
        if (last.caps or first.caps) and not self._shouted(i):  # "89.90 EUR, VAT 15.35"
            return None
        if last.low in _NOT_NAMES or last.low in _PLACES or last.key in _TITLES:
            return None
        if last.key in _GREETINGS or last.key in _SIGNOFFS:
            return None
        if first.low in _NOT_NAMES or first.low in _PLACES:
            return None
        if not self.is_first(first) and not (
            _looks_like_surname(last.key) and _script(last.key) == _script(first.key)
        ):
            return None
        if last.caps != first.caps:
            return None
        # "Berlin, Monday, Ana": the surname must not itself follow a capitalised word.
        if i > 0 and self.gap(i) == " " and toks[i - 1].cap:
            return None
        end = i + 2
        # "María del Carmen": particles, then another first name.
        k = end
        while k < n and k - end < 2 and self.gap(k) == " " and toks[k].key in _PARTICLES:
            k += 1
        if k > end and k < n and self.gap(k) == " " and toks[k].cap and self.is_first(toks[k]):
            end = k
        if end < n and self.gap(end) == " " and toks[end].cap:
            nxt = toks[end]
            # A second first name is part of it; any other capitalised word means this
            # was a list ("Lima, Ana Silva ...") and not one reversed name.
            if not self.is_first(nxt) or nxt.low in _NOT_NAMES or nxt.low in _PLACES:
                return None
            end += 1
        start = i
        while start > 0 and self.gap(start) == " " and toks[start - 1].key in _PARTICLES:
            if toks[start - 1].cap:
                break
            start -= 1
        norm = " ".join(t.key for t in (*toks.range(i + 1, end), *toks.range(start, i + 1)))
        return Span(toks[start].start, toks[end - 1].end, PERSON, norm), end

    def full_name(self, i: int) -> tuple[Span, int] | None:
        # No cue: two or more capitalised words that read as a name ("Omar Silva").
        toks = self.toks
        t = toks[i]
        if not t.cap or len(t.key) < 2 or i + 1 >= len(toks) or self.gap(i + 1) != " ":
            return None
        if t.low in _NOT_NAMES or t.low in _PLACES or t.key in _PARTICLES or t.low in _FUNCTION:
            return None
        if i > 0 and self.gap(i) == " ":
            prev = toks[i - 1]
            # "the Calvin Klein belt", "my Samsung Galaxy": a determiner makes it a thing;
            # "Uniqlo Ultra Light Down", "Rituals Advent Calendar": so does a capitalised
            # word before it, unless that word names a role ("Customer Lara Porto").
            if prev.key in _DETERMINERS or (
                prev.cap
                and prev.key not in _ROLES
                and prev.low not in _FUNCTION
                # ...but not a name or street found just before ("Omar Silva Omar
                # Silva": a run longer than one name; once redacted, either is a
                # pseudonym that blocks nothing), nor a capital that only opens a sentence
                # ("Called Ingrid Johansson back") unless it is itself a name.
                and i != self.resume
                and i - 1 not in self.in_address
                and not (self._opens_sentence(i - 1) and not self.is_name(prev))
            ):
                return None
        nxt = toks[i + 1]
        if nxt.num or len(nxt.key) < 2 or nxt.low in _NOT_NAMES or _is_title(self, i + 1):
            return None
        if nxt.low in _PLACES:  # "Real Madrid"
            return None
        if not (nxt.text.istitle() and t.text.istitle()) and (_camel(nxt.text) or _camel(t.text)):
            return None  # "Bose SoundLink"
        if t.low in _BRANDS or nxt.key in _GEO_SECOND:  # "Hilton Honors", "Long Beach"
            return None
        if t.key in _DEMONYMS or nxt.key in _ORG_WORDS:  # "British Airways", "Premier Inn"
            return None
        if nxt.low in _FUNCTION:  # "END IF", "If Ana"
            return None
        if not nxt.cap and nxt.key not in _PARTICLES:
            return None
        if t.caps != nxt.caps and nxt.cap:
            return None
        if t.caps and not self._shouted(i) and not self._labelled(i):
            return None
        if self.is_first(t):
            pass  # "Omar Silva", "Karsten Wieloch-Bolnbach", "DANTE CRISPI"
        elif nxt.cap and nxt.key in self.surname and t.key in self.surname and not t.caps:
            pass  # "Gallego Burgos": two known surnames (an unknown word before one is
            # too often a brand: "Deutsche Telekom", "Vodafone Red")
        elif nxt.cap and _looks_like_surname(nxt.key) and _script(t.key) == _script(nxt.key):
            pass  # "Иларион Красильникова", "Κλεόβουλος Δάρας"
        elif (
            nxt.cap
            and not t.caps
            and nxt.key in self.surname
            and t.low not in _BRANDS
            and self._person_context(i)
        ):
            pass  # "spoke with Minjun Choi", "assignee: Irmengard Meister"
        else:
            return None
        if t.caps:
            # Shouting: the surname slot may be unknown, later words must be known names.
            j = i + 2
            while j < len(toks) and toks[j - 1].key in _PARTICLES and self.gap(j) == " ":
                j += 1  # "STIJN VAN DOOREN", "ANA DE LA CRUZ"
            if j > len(toks):
                return None
            while j < len(toks) and j - i < _MAX_NAME_TOKENS and self.gap(j) == " ":
                if not (toks[j].caps and self.is_name(toks[j])):
                    break
                j += 1
        else:
            j = self.run(i)
            if j < i + 2 or toks[j - 1].key in _PARTICLES:
                return None
            # Without a cue every word past the second must be a known name, and the word
            # after the name must not be a capitalised non-name: "Heinz Tomato Ketchup",
            # "Minecraft Java Edition", "Wells Fargo Active Cash" are products, headings or
            # brands, not a person followed by a word.
            for m in range(i + 2, j):
                if toks[m].key not in _PARTICLES and self._thing_word(toks[m], street=False):
                    return None
            if j < len(toks) and self.gap(j) == " " and j not in self.in_address:
                f = toks[j]
                if f.cap and not f.caps and self._thing_word(f) and not _is_title(self, j):
                    return None
        # A name does not end on a particle ("IBAN DE", "Sigrun Dussen van").
        if j < i + 2 or toks[j - 1].key in _PARTICLES:
            return None
        return self.person(i, j), j

    def _labelled(self, i: int) -> bool:
        """A label names what follows ("Customer Name - ELIF KAYA", "Recipient: OMAR")."""
        if i == 0:
            return False
        gap = self.gap(i)
        if len(gap) > 4 or "\n" in gap or (":" not in gap and "-" not in gap):
            return False
        return self.toks[i - 1].low in _LABELS

    def _person_context(self, i: int) -> bool:
        """The word before token i says a person follows ("spoke with", "assigned to",
        "customer:"), on the same line."""
        if i == 0:
            return False
        gap = self.gap(i)
        if len(gap) > 4 or "\n" in gap:
            return False
        return self.toks[i - 1].low in _PERSON_CONTEXT

    def _thing_word(self, t: _Tok, street: bool = True) -> bool:
        """A capitalised word that, next to a name without a cue, makes it a thing.

        After the name a street type too ("Victoria Park"); inside it not, as many are
        surnames ("Li Na Park", "Mary Ann Hill").
        """
        return (
            t.low in _NOT_NAMES
            or t.key in _PLACE_NOUNS
            or t.key in _ORG_WORDS
            or (street and _is_en_street_type(t.key))
            or not self.is_name(t)
        )

    def _shouted(self, i: int) -> bool:
        """Token i is in a line with no lower-case letter ("CUSTOMER NAME: OMAR SILVA").

        Capitals inside a mixed-case line are acronyms, SQL or log keywords far more often
        than a shouted name ("IS NULL", "ALTER TABLE", "LEFT JOIN"); a cue still finds a
        shouted name there ("Dear OMAR SILVA").  Only 200 characters each way are looked
        at, so that a long text costs no more than a short one per candidate.
        """
        text = self.text
        t = self.toks[i]
        lo = text.rfind("\n", max(0, t.start - 200), t.start) + 1 or max(0, t.start - 200)
        hi = text.find("\n", t.end, t.end + 200)
        line = text[lo : hi if hi != -1 else t.end + 200]
        return line == line.upper()

    # -- addresses

    def addresses(self) -> list[Span]:
        toks = self.toks
        found: list[Span] = []
        for i, w in enumerate(toks.words):
            if w[0].isdigit():
                span = self.number_first(i) or self.number_last(i)
                if span is not None:
                    found.append(span)
        return found

    def _addr(self, i: int, j: int) -> Span:
        toks = self.toks
        self.in_address.update(range(i, j))
        raw = self.text[toks[i].start : toks[j - 1].end]
        norm = " ".join(w.key or w.text.casefold() for w in toks.range(i, j))
        return Span(toks[i].start, toks[i].start + len(raw), ADDRESS, norm)

    def _unit_before(self, i: int) -> int:
        # "Flat 4 Smith Road", "Studio 3 Taylor Spur": the unit belongs to the address.
        toks = self.toks
        if i >= 1 and toks[i - 1].key in _UNITS and self.gap(i) == " ":
            return i - 1
        # "Flat 2, 61 Victoria Street", "Unit 15, 65 Castle Mews": a numbered unit first.
        if (
            i >= 2
            and toks[i - 1].num
            and self.gap(i) in (", ", " ")
            and self.gap(i - 1) == " "
            and toks[i - 2].key in _UNITS
        ):
            return i - 2
        return i

    def _unit_after(self, j: int) -> int:
        # ", Apt 4", " Suite 300", ", Flat 2", " Apt. 12B"
        toks = self.toks
        if j + 1 < len(toks) and toks[j].key in _UNITS and self.gap(j) in (" ", ", ", ","):
            if toks[j + 1].num and self.gap(j + 1) in (" ", ". ", " #", "#"):
                return j + 2
            if toks[j].key == "no":
                return j
        if j < len(toks) and toks[j].num:
            gap = self.gap(j)
            # "Maple Avenue #4", "Sunset Blvd, #4"
            if gap in (" #", ", #", ",#"):
                return j + 1
            # "Calle Mayor 12, 3º B": the floor (and door) of a Spanish address.
            if gap == ", " and toks[j].text[-1] in "º°ª":
                j += 1
                if j < len(toks) and self.gap(j) == " " and self._door_letter(j):
                    j += 1
                return j
        # "Vesterbrogade 196 B", "Stationsweg 12 A": a door letter after the number.
        if j < len(toks) and self.gap(j) == " " and toks[j - 1].num and self._door_letter(j):
            return j + 1
        return j

    def _door_letter(self, j: int) -> bool:
        """Token j is one capital letter closing an address line ("196 B,", "3º A")."""
        t = self.toks[j]
        if len(t.text) != 1 or not t.text.isupper():
            return False
        after = self.text[t.end : t.end + 2]
        if after[:1] in ("", ",", ".", ";", "\n", "\r", '"', ")"):
            return True
        # "Prinsengracht 44 B this morning" (but "... 12 A lot", "... 5 I think").
        return t.text not in "AI" and after[0] == " " and after[1:].islower()

    def number_first(self, i: int) -> Span | None:
        toks = self.toks
        n = len(toks)
        t = toks[i]
        if len(t.text) > 6:
            return None
        before = self.text[toks[i - 1].end if i else 0 : t.start]
        if before.endswith(("#", "-", "/", ".", ">")) or (i > 0 and before == ""):
            return None
        if i + 1 >= n or self.gap(i + 1) not in (" ", ", "):
            return None
        # French/Southern: "12, rue de la Paix", "23 avenue Victor Hugo", "8 bis, allée ...".
        p = i + 1
        if (
            toks[p].key in ("bis", "ter")
            and self.gap(p) == " "
            and p + 1 < n
            and self.gap(p + 1) in (" ", ", ")
            and toks[p + 1].key in _PREFIX_STREET_TYPES
        ):
            p += 1
        if toks[p].key in _PREFIX_STREET_TYPES and not toks[p].num:
            j = self._street_words(p + 1)
            if j > p + 1:
                return self._addr(i, j)
            return None
        if self.gap(i + 1) != " ":
            return None
        # English: "12 Elm Street", "6907 Griffith Forks Suite 412", "4 William Port".
        j = i + 1
        last_type = -1
        while j < n and j - i <= _MAX_STREET_TOKENS and self.gap(j) == " ":
            w = toks[j]
            if w.num:
                # "W 4th Street": an ordinal is part of the street name.
                if j == i + 1 or w.text[-2:].lower() not in ("st", "nd", "rd", "th"):
                    break
            elif not w.cap:
                break
            if j > i + 1 and _is_en_street_type(w.key):
                last_type = j
            elif j == i + 1 and len(w.key) >= 7 and w.key.endswith("way"):
                last_type = j  # "85 Queensway", "12 Broadway": one word, a street type
            j += 1
        if last_type < 0:
            return None
        end = last_type + 1
        # "St." / "Rd." abbreviations keep their dot outside the span (sentence ends too).
        end = self._unit_after(end)
        return self._addr(self._unit_before(i), end)

    def _street_words(self, k: int) -> int:
        toks = self.toks
        j = k
        while j < len(toks) and j - k < _MAX_STREET_TOKENS and self.gap(j) in (" ", " d'", "'"):
            w = toks[j]
            if w.num:
                break
            if w.cap or w.key in _PARTICLES or w.key in ("d", "des", "l"):
                j += 1
                continue
            break
        # Do not end on a particle.
        while j > k and not toks[j - 1].cap:
            j -= 1
        return j

    def number_last(self, i: int) -> Span | None:
        # "Hauptstraße 12", "Hartmutstr. 5", "Van der Veenlaan 3", "Via Roma 12",
        # "Calle de Alcalá, 45", "ul. Młyńska 066".
        toks = self.toks
        if i == 0 or len(toks[i].text) > 8:
            return None
        gap = self.gap(i)
        if gap not in (" ", ". ", ", "):
            return None
        w = toks[i - 1]
        if w.num:
            return None
        after = self.text[toks[i].end : toks[i].end + 1]
        if after.isalnum() or after == "<":
            return None
        key = w.key
        if gap == ". " and not key.endswith("str"):
            return None
        if (
            key in _SEPARATE_STREET_WORDS
            and (not w.cap or w.caps)
            and i >= 2
            and self.gap(i - 1) == " "
            and toks[i - 2].cap
            and toks[i - 2].low not in _NOT_NAMES
        ):
            # "Karl Johans gate 17", "Bygdøy allé 5": a lower-case street word after the
            # street's name (one or two capitalised words).
            start = i - 2
            if (
                start > 0
                and self.gap(start) == " "
                and toks[start - 1].cap
                and toks[start - 1].low not in _NOT_NAMES
            ):
                start -= 1
            return self._addr(start, self._unit_after(i + 1))
        if gap != ", " and (key.endswith(_STREET_SUFFIXES) and (w.cap or key in _STREET_SUFFIXES)):
            start = i - 1
            # "Berliner Straße 12": a street word on its own takes the word before it.
            if key in _STREET_SUFFIXES and start > 0 and self.gap(start) == " ":
                p = toks[start - 1]
                if p.cap and not p.num and p.low not in _NOT_NAMES:
                    start -= 1
            # "Van der Veenlaan 3", "Am Markt 3", "De Clercqstraat 5": particles before
            # it, the first of them capitalised ("Bitte an Hauptstraße 12" is not one).
            k = start
            while k > 0 and start - k < 3 and self.gap(k) == " ":
                p = toks[k - 1]
                if p.key in _PARTICLES or (p.cap and p.key in _STREET_PARTICLES):
                    k -= 1
                    continue
                break
            while k < start and not toks[k].cap:
                k += 1
            start = k
            return self._addr(start, self._unit_after(i + 1))
        # Prefix street types: scan back for one within a few words.
        k = i - 1
        while k >= 0 and i - k <= _MAX_STREET_TOKENS:
            p = toks[k]
            if p.num:
                return None
            if p.key in _PREFIX_STREET_TYPES and (k == i - 1 or self.gap(k + 1) in (" ", ". ")):
                if k == i - 1:
                    # "Rue 12" alone is too little to call it an address, but
                    # "Calle Gran Vía 28" has its type further back.
                    k -= 1
                    continue
                # Every word between the type and the number is part of the name.
                if all(toks[m].cap or toks[m].key in _PARTICLES for m in range(k + 1, i)) and all(
                    self.gap(m) in (" ", "'") for m in range(k + 2, i)
                ):
                    return self._addr(k, self._unit_after(i + 1))
                return None
            if k < i - 1 and self.gap(k + 1) not in (" ", "'"):
                return None
            k -= 1
        return None


# Words right before a name that say a person follows: an unknown first name before a
# known surname counts after them ("spoke with Minjun Choi", "requester: Vahittin Çetin").
_PERSON_CONTEXT = _words(
    """
    with by called emailed contacted messaged phoned cc attn name contact to for from
    owner requester reporter assignee recipient sender passenger guest patient tenant
    cardholder signed approved spoke
    """
)

# Labels before a shouted name in a mixed-case line.
_LABELS = _words(
    """
    name customer client recipient passenger contact attn owner requester assignee sender
    guest holder cardholder
    """
)

# Vietnamese family names (together ~95% of people), as name_key forms.
_VI_FAMILY = _words(
    """
    nguyen tran le pham hoang huynh phan vu vo dang bui do ho ngo duong ly truong dinh
    lam mai trinh luong
    """
)
_VI_AMBIGUOUS = _words("le do ho ly lam mai dinh")

# Street words written apart from the street's name (Norwegian, Danish, Swedish).
_SEPARATE_STREET_WORDS = _words("gate gata vei veg vej gade alle vag plass torg")

_STREET_PARTICLES = frozenset(["am", "an", "im", "in", "auf", "zum", "zur"])
# Possessive, so that a long gap that does not fit fails in one pass.
_SIGNOFF_GAP = re.compile(r"[ \t]*+[,!.:]?[ \t]*+(?:\r?\n[ \t]*+){0,3}")
_CLAUSE_START = re.compile(r"[ \t]*+(?:[,.!?:;\-][ \t]*+|\r?\n[ \t]*+)")


_DETERMINERS = _words(
    """
    the a an my your our his her their this that these those its le la les un une mon ma
    mes der die das ein eine mein meine el los las mi il lo het een mijn min mitt din
    """
)


# A capitalised word right before a name that does not make it a product or a team.
_ROLES = _words(
    """
    customer client user member holder cardholder manager colleague driver courier
    technician owner caller sender recipient buyer seller guest patient tenant agent
    contact name mr mrs ms dr
    """
)

_CUE_WORDS = _GREETINGS | _SIGNOFFS | _INTRO_LAST
# The same as typed (lower-cased, accents kept), for the pre-check.
_CUE_SET = _CUE_WORDS | _words(
    """
    olá grüße grüsse gruß hälsningar sayg\u0131lar\u0131mla i\u2019m it\u2019s name\u2019s here
    cześć
    """
)
_STREET_WORDS = (
    _EN_STREET_TYPES | {w + "s" for w in _EN_STREET_TYPES} | _PREFIX_STREET_TYPES
) | frozenset(
    # the same, as typed (with accents), for the pre-check that sees raw words
    ["allée", "allé", "strasse", "straße", "praça", "gate", "vei", "vej", "gade", "väg", "plass"]
)
# Street-name endings as typed: name_key forms plus their accented spellings.
_STREET_SUFFIXES_RAW = (
    *_STREET_SUFFIXES, "way", "straße", "vägen", "väg", "gränd", "třída", "náměstí"
)  # fmt: skip
# What may follow a single lower-case name that closes an introduction.
_AFTER_A_LOWER_NAME = frozenset(["here", "again", "and", "from", "speaking", "writing"])
_STRICT_TITLES = frozenset(
    ["mr", "mrs", "ms", "dr", "sr", "sra", "srta", "herr", "frau", "mme", "mlle", "prof"]
)


def _is_title(scan: _Scan, i: int) -> bool:
    """Token i is a title ("Sra.", "Mr"), which ends a name rather than continuing it."""
    t = scan.toks[i]
    if t.key in _STRICT_TITLES:
        return True
    return t.key in _TITLES and scan.text.startswith(".", t.end)


def _script(key: str) -> str:
    c = key[0]
    if "\u0400" <= c <= "\u04ff":
        return "cyrillic"
    if "\u0370" <= c <= "\u03ff":
        return "greek"
    return "other"


def _looks_like_surname(key: str) -> bool:
    """A surname by its shape, for the cased non-Latin scripts the gazetteer covers thinly.

    Any capitalised Greek or Cyrillic word: in traffic that is otherwise Latin-script, two
    capitalised Greek or Cyrillic words in a row are a name far more often than anything
    else (in a whole Russian or Greek text this over-redacts a sentence's first word before
    a proper noun).  Latin-script words are never judged by their shape: "Basis", "Atlas",
    "Origin" would all look like surnames.
    """
    return _script(key) != "other" and len(key) > 2


def _camel(word: str) -> bool:
    """A capital inside a word ("SoundLink", "iPhone"): a product, not a name, unless it
    follows a name prefix ("McDonald", "MacLeod", "DeAngelo") or a hyphen/apostrophe."""
    if word.isupper() or word.islower():
        return False
    for k in range(1, len(word)):
        c = word[k]
        if c.isupper() and word[k - 1].islower():
            return word[:k].lower() not in _NAME_PREFIXES
    return False


_NAME_PREFIXES = frozenset(["mc", "mac", "de", "di", "da", "le", "la", "du", "van", "von", "fitz"])


def _is_lower_surname(t: _Tok) -> bool:
    return (
        not t.num
        and not t.cap
        and t.text.replace("'", "").replace("\u2019", "").replace("-", "").isalpha()
        and len(t.text) > 1
        and t.low not in _FUNCTION
        and t.low not in _NOT_NAMES
        and t.low not in _COMMON_WORDS
    )


def _is_en_street_type(key: str) -> bool:
    return key in _EN_STREET_TYPES or (key.endswith("s") and key[:-1] in _EN_STREET_TYPES)


def _is_space_gap(gap: str) -> bool:
    return gap == " "
