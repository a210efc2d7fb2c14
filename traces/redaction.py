"""PII redaction for traces: personal data becomes typed, keyed pseudonyms before storage.

Pure module (no Django, no database) because it runs on the gateway hot path and must be
testable in isolation.

Why these choices
-----------------
* Every value is replaced by ``<KIND:16 hex>``, the first 16 hex characters (64 bits) of
  ``HMAC-SHA256(key, "KIND:normalized")``.  A keyed HMAC (not a plain hash) means nobody
  without the secret can confirm a guess ("is this alice@example.com?"), while the same
  customer still links across runs.  64 bits because two different people must not share
  a pseudonym by chance (that would silently merge their evidence): with 32 bits that
  happens more often than not among 100,000 customers, with 64 bits the chance at that
  size is about 3 in 10^10.  Tags of 8 hex (before 2026-11) are still recognised, so
  stored text that carries them is left alone.  The key is per linkage domain
  (``linkage_key``: the
  gateway derives one per workflow, or per group of workflows meant to link, from its
  master key), so the same person links only inside that domain.  Values are
  normalised first so that different
  spellings of one identity link too: emails lower-cased, phones in E.164, IBANs compact
  upper-case, cards digits only, IPs in ``ipaddress`` compressed form, declared fields
  ``str(value).strip().casefold()``.
* Detection prefers checksums and real numbering-plan data over loose regexes, because a
  redactor that eats order ids, amounts and dates makes traces useless.  IBANs are checked
  with python-stdnum (ISO 7064 mod 97 plus per-country length/format; not its bank-code
  registry, which would turn an unknown bank into a leak), cards with the Luhn
  check (and an issuer first digit 2-6, so millisecond timestamps and airline/fuel cards
  are left alone), IPs with the stdlib ``ipaddress`` parser, and phone numbers with Google's
  libphonenumber port (``phonenumbers``) at ``Leniency.VALID``: a digit run only counts as
  a phone if it is a valid number of a real numbering plan, which is what keeps ticket
  numbers, SKUs/ISBNs, dates and coordinates out.  ``Leniency.POSSIBLE`` was measured and
  rejected: it turns dates, 8-digit ids and ISBNs into German/Dutch/British numbers.
* International numbers (``+`` or ``00`` prefix) are always looked for; national formats
  only for the regions a deployment configures, in order (the first region that validates
  a number decides its E.164 form, since e.g. ``030 12345678`` is valid in both DE and GB).
  Where the plan has a trunk prefix other than the NANP's optional "1" (DE/GB/FR/NL: "0"),
  a national number must be written with it: ``030 12345678`` is a phone, the order id
  ``30123456`` is not.
* Presidio/spaCy were avoided: too slow for the hot path and they want model downloads.
* Speed: every detector has a cheap pre-check (no ``@`` -> no email scan, no digit ->
  nothing to do, fewer than 7 digits -> no phone scan, fewer than 13 -> no card scan),
  regexes are compiled once (those that scan whole texts start with a character class,
  so the engine can skip ahead to the next digit), and phonenumbers only ever sees short
  windows around digit runs that could be a phone, and a region only when its
  numbering-plan pattern could match (one merged check for all configured regions turns
  most ids and amounts away at once).  Results are memoised in bounded caches: whole
  short strings (the same order id, date or status value recurs in every body), each
  phone candidate with its context window, phonenumbers' verdict per window, pseudonyms,
  and what a dict key declares.  All are pure functions of their arguments, so the memos
  never change a result; a round of detection is only repeated while a digit or "@" is
  left unmasked.
* Linear work, bounded per request.  Every detector does work linear in its input: the
  email scan looks at most 64 characters left and 256 right of each "@"; an IBAN-shaped
  run validates only the cut of its country's length; card runs are listed once per
  group that can start one (at most 19 digits each), kept longest-first through a mask
  of taken characters; a phone candidate longer than 64 characters (a list of numbers,
  not one number) is checked run of groups by run of groups (7 to 20 digits each),
  never handed to phonenumbers whole; overlaps are resolved without comparing every
  pair.  What remains is a constant per character, but a large one for the worst
  shapes (about 250 units a character for 1-digit groups that many regions could read
  as phones), and masking one value can uncover the next, one detection round each.  So
  a ``Budget`` caps each request: units of work (about a microsecond each; every
  detector charges what it does, on memo misses only) and distinct personal values.
  Past either, redaction raises ``RedactionRefused`` and the caller stores nothing:
  refusing is the only outcome that neither stores PII in clear nor spends unbounded CPU.
* Idempotence: existing pseudonyms are masked before detection, and detection repeats on
  the masked text until nothing new is found.  Masks look like pseudonyms (``<___>``), so a
  second run over redacted output sees exactly what the last round saw and finds nothing:
  ``redact(redact(x)) == redact(x)``.

Decisions worth knowing
-----------------------
* A bare dotted quad such as ``1.2.3.4`` is a valid IPv4 address and *is* redacted, even
  when it is really a version number: over-redacting a four-part version is cheaper than
  leaking an address.  ``v1.2.3.4``, ``1.2.3`` and ``1.2.3.4.5`` are left alone.
* IPv6 candidates need two colons and a decimal digit, so ``10:30``, ``a::b`` in code and
  MAC addresses are not taken for addresses.
* Overlaps are resolved longest-first, then earliest; checksum-backed kinds (email, IBAN,
  card, IP) are settled before phones, so a phone can never split an IBAN or card.
* An upper-case IBAN look-alike whose checksum fails is left visible, and card numbers
  are not looked for inside it (its digits would otherwise pass Luhn one time in ten).
* Under a declared personal field every leaf is pseudonymised (strings, numbers, bools)
  under the innermost declared key's kind; ``None`` stays ``None``.  Dict keys are
  redacted like any string; if two keys collapse into one pseudonym, the later one wins.

Names and street addresses in free text are found by traces/names.py (gazetteer + cues,
see its docstring for what it does and does not find), after the structured detectors,
on the text with every pseudonym and structured value masked, in up to four rounds (a
masked name can change how the words around it read). A redactor made `without_people()`
(what reviewers type) skips them.

Not detected: other free-text identifiers (declare them as personal fields), national
phone formats of regions that are not configured, phone numbers whose digits are glued
to letters (``tel4930123456``), a phone number followed by more digit groups in a
candidate of 64 characters or less (``+49 30 12345678 2345678``: phonenumbers reads the
whole run, which is no number), cards outside the 2-6 issuer range or written with
separators other than single spaces/dashes, IBANs split other than in groups of four,
obfuscated emails (``alice at example dot com``).
Over-detected: in regions without a required trunk prefix (US, ES, IT, …) a bare id that
is also a valid national number (``4155552671``, ``612345678``) is redacted as a phone.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import ipaddress
import itertools
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers import Leniency, PhoneMetadata, PhoneNumberFormat, PhoneNumberMatcher
from stdnum import iban as stdnum_iban
from stdnum import isbn as stdnum_isbn
from stdnum import numdb

from traces import names

__all__ = [
    "KINDS",
    "PSEUDONYM_RE",
    "Budget",
    "PiiMatch",
    "RedactionRefused",
    "Redactor",
    "TooManyPersonalValues",
    "TooMuchWork",
    "find_pii",
    "linkage_key",
    "make_redactor",
    "pseudonym",
]

EMAIL = "EMAIL"
PHONE = "PHONE"
IBAN = "IBAN"
CARD = "CARD"
IP = "IP"
PERSON = names.PERSON
ADDRESS = names.ADDRESS
KINDS = (EMAIL, PHONE, IBAN, CARD, IP, PERSON, ADDRESS)

# Tags are 16 hex characters (64 bits).  Tags of 8 (32 bits, before 2026-11) are still
# recognised, so text stored with them is left alone and redaction stays idempotent.
TAG_HEX = 16
PSEUDONYM_RE = re.compile(r"<([A-Z0-9_]+):([0-9a-f]{16}|[0-9a-f]{8})>")


class PiiMatch(NamedTuple):
    kind: str
    start: int
    end: int
    value: str


# (kind, start, end, normalized); the raw value is always text[start:end].
type _Hit = tuple[str, int, int, str]


def pseudonym(key: bytes, kind: str, normalized: str) -> str:
    digest = hmac.new(key, f"{kind}:{normalized}".encode(), hashlib.sha256).hexdigest()
    return f"<{kind}:{digest[:TAG_HEX]}>"


def linkage_key(master: str | bytes, domain: str) -> bytes:
    """The pseudonym key of one linkage domain: HMAC-SHA256(master, "linkage:" + domain).

    Values link (get the same pseudonym) only inside one domain; the master key never
    keys a pseudonym itself, and one domain's key tells nothing about another's.
    """
    secret = master.encode() if isinstance(master, str) else bytes(master)
    return hmac.new(secret, f"linkage:{domain}".encode(), hashlib.sha256).digest()


@lru_cache(maxsize=256)
def _keyed_hmac(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


@lru_cache(maxsize=8192)
def _token(key: bytes, kind: str, normalized: str) -> str:
    """`pseudonym`, memoised (an order id is often in every tool call of a body), and on a
    miss computed from a copy of the keyed HMAC instead of keying a new one."""
    mac = _keyed_hmac(key).copy()
    mac.update(f"{kind}:{normalized}".encode())
    return f"<{kind}:{mac.hexdigest()[:TAG_HEX]}>"


# ------------------------------------------------------------------------------ budget


class RedactionRefused(ValueError):
    """A body this redactor will not store: nothing of it may be kept."""

    code = "redaction_refused"


class TooManyPersonalValues(RedactionRefused):
    code = "too_many_personal_values"


class TooMuchWork(RedactionRefused):
    code = "redaction_budget_exceeded"


# One unit of work is roughly a microsecond of CPU on the 2-core machine of bench/README.md
# (bench/redaction.py prints the ratio per input shape).  Each detector charges what it
# does: every 16 characters of a detection round 1, a candidate address, IBAN shape,
# card start, Luhn or numbering-plan check 2 (with its bookkeeping), an IBAN
# validation 4, a call to phonenumbers' matcher 80.  Every detector is linear in its
# input, so this is a constant-factor wall, not the fix: it caps what one body may cost,
# whatever its shape.
WORK_PER_SCANNED_CHARS = 16
WORK_CHECK = 2
WORK_IBAN = 4
WORK_MATCHER = 80


class Budget:
    """What one request may make the redactor do: at most `max_values` distinct personal
    values and `max_work` units of work (see above).  One per request; not shared
    between threads.  Exceeding either raises a RedactionRefused subclass, and the caller
    then stores nothing."""

    __slots__ = ("max_values", "max_work", "values", "work")

    def __init__(self, *, max_values: int | None = None, max_work: int | None = None) -> None:
        self.max_values = max_values
        self.max_work = max_work
        self.values: set[str] = set()
        self.work = 0

    def spend(self, units: int) -> None:
        self.work += units
        if self.max_work is not None and self.work > self.max_work:
            raise TooMuchWork(
                "this request holds too much digit- or address-shaped text to redact "
                f"(over a budget of {self.max_work:,} units); send it in smaller parts"
            )

    def value(self, token: str) -> None:
        values = self.values
        if token not in values:
            values.add(token)
            if self.max_values is not None and len(values) > self.max_values:
                raise TooManyPersonalValues(
                    f"this request carries more than {self.max_values} distinct personal "
                    "values (emails, phone numbers, IBANs, cards, IP addresses, declared "
                    "fields); send fewer per request"
                )


# The budget of the redaction under way in this thread (or task), if any: the detectors
# are memoised pure functions, so it cannot travel as an argument.  Work is only charged
# on memo misses, which is the work actually done.
_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "redaction_budget", default=None
)


def _spend(units: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(units)


# --------------------------------------------------------------------------- detectors

_ANY_DIGIT = re.compile(r"\d")

# The local part is found by looking left from each "@", bounded, so a long run of word
# characters with one "@" somewhere cannot make the scan quadratic (see _email_hits).
_NOT_EMAIL_LOCAL = re.compile(r"[^\w.%+\-]")
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}")

# Two letters (not inside a word), two check digits, then groups of four.  The match is
# anchored on the first check digit, with the letters checked looking back: a pattern that
# starts with a digit lets the regex engine skip straight to digits instead of trying
# every letter of the text.  The IBAN itself starts two characters before the match.
_IBAN = re.compile(
    r"[0-9](?<=(?<![0-9A-Za-z_])[A-Za-z]{2}[0-9])[0-9]"
    r"(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?\b",
    re.ASCII,
)
_IBAN_MIN_LEN = 12  # the shortest text _IBAN can match

# Digit groups joined by single spaces/dashes.  Not after "+" (that is a phone) nor after
# "<digit>." (the fraction part of a decimal).  (The look-behinds come after the first
# digit, which they then include, so that the pattern starts with a digit: see _IBAN.)
_CARD_CHAIN = re.compile(r"[0-9](?<![0-9+][0-9])(?<![0-9]\.[0-9])[0-9]*(?:[ \-][0-9]+)*", re.ASCII)
_CARD_GROUP = re.compile(r"[0-9]+", re.ASCII)
# A group that can start a card: 4+ digits, the first an issuer digit (see _is_card).
_CARD_START = re.compile(r"[2-6](?<![0-9][2-6])[0-9]{3}", re.ASCII)
_CARD_MIN_DIGITS = 13  # see _is_card

# "v1.2.3.4" is a version, so a letter before the quad disqualifies it.
_IPV4 = re.compile(
    r"[0-9](?<![0-9A-Za-z.][0-9])[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![0-9]|\.[0-9])",
    re.ASCII,
)
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?(?![0-9A-Za-z:])",
    re.ASCII,
)

# Runs of at least 7 digits joined by the punctuation people put in phone numbers; only
# these are shown to phonenumbers.  Seven is the shortest E.164 number in practice.
# (Written as "[+(]*\d…" but starting with one character class, which lets the regex
# engine skip ahead to the next "+", "(" or digit instead of trying every position.)
_PHONE_CANDIDATE = re.compile(r"[+(\d](?:(?<=\d)|(?<=[+(])[+(]*\d)(?:[\s().\-/]{0,3}\d){6,}")
# The same for pure-ASCII text (nearly all of it), where the Unicode classes reduce to
# these ASCII sets (\s also matches \x1c-\x1f); plain sets are checked much faster.
_PHONE_CANDIDATE_ASCII = re.compile(
    r"[+(0-9](?:(?<=[0-9])|(?<=[+(])[+(]*[0-9])(?:[\t-\r\x1c-\x1f ().\-/]{0,3}[0-9]){6,}"
)
_PHONE_MIN_DIGITS = 7
# A text with fewer digits than that holds no candidate (nor one with fewer than 13 ASCII
# digits a card): one linear, possessive match decides it.
_ENOUGH_DIGITS_FOR_A_PHONE = re.compile(rf"(?:\D*+\d){{{_PHONE_MIN_DIGITS}}}")
_ENOUGH_DIGITS_FOR_A_CARD = re.compile(rf"(?:[^0-9]*+[0-9]){{{_CARD_MIN_DIGITS}}}")
# Dates, ISBN-like and decimal amounts are never phones; skipping them saves the matcher.
_NOT_A_PHONE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d+\.\d{1,2}",
)
_INTERNATIONAL_START = re.compile(r"[(]*(?:\+|00(?=\s?[1-9]))")
_DIGIT_GROUPS = re.compile(r"\d+")
# Context handed to the matcher around a candidate: it looks at the character before and
# a few after (letters next to the digits, ":mm" timestamps, "ext. 12" extensions).
_CONTEXT_BEFORE = 4
_CONTEXT_AFTER = 12


def _email_hits(s: str) -> list[_Hit]:
    hits: list[_Hit] = []
    at = s.find("@")
    while at != -1:
        _spend(WORK_CHECK)
        # The local part is the run of local-part characters ending at the "@", at most
        # 64 long: found as the first other character of the reversed 64 before it.
        lo = max(0, at - 64)
        stop = _NOT_EMAIL_LOCAL.search(s[lo:at][::-1])
        start = lo if stop is None else at - stop.start()
        domain = _EMAIL_DOMAIN.match(s, at + 1, min(len(s), at + 256)) if start < at else None
        if domain is not None:
            # A local part cannot start with a dot; "…see.john@" keeps the sentence dot.
            while start < at and s[start] == ".":
                start += 1
            if start < at:
                raw = s[start : domain.end()]
                hits.append((EMAIL, start, domain.end(), raw.lower()))
        at = s.find("@", at + 1)
    return hits


_IBAN_DB = numdb.get("iban")
_BBAN_PART = re.compile(r"([1-9][0-9]*)!")


@lru_cache(maxsize=512)
def _iban_length(country: str) -> int | None:
    """The length of a compact IBAN of `country` (upper case) in stdnum's registry, or
    None if stdnum knows no IBAN format for it."""
    info = _IBAN_DB.info(country)
    structure = info[0][1].get("bban") if info and info[0][0] == country else None
    if not structure:
        return None
    return 4 + sum(int(n) for n in _BBAN_PART.findall(structure))


def _iban_hits(s: str) -> tuple[list[_Hit], list[tuple[int, int]]]:
    """IBANs, plus the spans of upper-case IBAN look-alikes whose checksum failed.

    A mistyped IBAN stays visible (it is not an IBAN), but its digits must not then be
    reported as a card just because a run of them happens to pass Luhn.
    """
    hits: list[_Hit] = []
    look_alikes: list[tuple[int, int]] = []
    if len(s) < _IBAN_MIN_LEN:
        return hits, look_alikes
    pos = 0
    # A match at q means an IBAN-shaped run from q - 2 (see _IBAN), so searching from
    # pos + 2 finds the first run starting at pos or later.
    while (m := _IBAN.search(s, pos + 2)) is not None:
        start = m.start() - 2
        raw = s[start : m.end()]
        _spend(WORK_CHECK)
        # The pattern may have swallowed what follows ("… 7034 CH93 0076", "… 44 INST");
        # give back trailing groups until the length is the country's, and validate that
        # one cut only: an IBAN of a country has exactly one length, so no other cut can
        # pass (and each position of the text costs at most one validation).
        length = _iban_length(raw[:2].upper())
        while raw:
            compact = raw.replace(" ", "").upper()
            if len(compact) == length:
                _spend(WORK_IBAN)
                # check_country=False: the national checks also demand a bank code stdnum
                # knows, and an outdated bank list must not turn into a leak.  Mod 97 plus
                # the per-country length/format check is already a strong filter.
                if len(compact) >= 15 and stdnum_iban.is_valid(compact, check_country=False):
                    hits.append((IBAN, start, start + len(raw), compact))
                else:
                    raw = ""
                break
            cut = raw.rfind(" ")
            if length is None or len(compact) < length or cut <= 4:
                raw = ""
                break
            raw = raw[:cut]
        if raw:
            pos = start + len(raw)
        else:
            shape = s[start : m.end()]
            if shape[:2].isupper() and 15 <= len(shape.replace(" ", "")) <= 34:
                look_alikes.append((start, m.end()))
            pos = start + 1
    return hits, look_alikes


# Doubling a digit and adding the digits of the result, as Luhn does: 0→0, 1→2, … 5→1, ….
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def _luhn_ok(digits: str) -> bool:
    """The Luhn check of a string of ASCII digits (stdnum's luhn.is_valid, faster: this
    runs once per run of digit groups that could be a card)."""
    rev = digits[::-1]
    return (sum(map(int, rev[::2])) + sum(map(int, rev[1::2].translate(_LUHN_DOUBLED)))) % 10 == 0


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_ok(digits)


def _card_hits(s: str) -> list[_Hit]:
    hits: list[_Hit] = []
    for chain in _CARD_CHAIN.finditer(s):
        if chain.end() - chain.start() < 13:
            continue
        hits.extend(_cards_in_chain(s, chain.start(), chain.end()))
    return hits


def _cards_in_chain(s: str, c_start: int, c_end: int) -> list[_Hit]:
    """The cards in one chain of digit groups, s[c_start:c_end], in order.

    Cards are printed as one block or as groups of 4+ digits (4-4-4-4, Amex 4-6-5, Diners
    4-6-4, 19-digit 4-4-4-4-3); the last group may be shorter.  Requiring that shape keeps
    lists of small numbers ("12 34 56 …") from producing Luhn-valid accidents.

    Every run of groups that is a card is listed, then kept longest first, then earliest,
    unless it overlaps one already kept (a chain may hold two cards, or a card after an
    unrelated number).  A run starts at a group of 4+ digits with an issuer digit (see
    _is_card) and spans at most 19 digits, so each such group starts a bounded number of
    runs and the work is linear in the chain.
    """
    runs: list[tuple[int, int, int, str]] = []  # (-digits, start, end, digits)
    for first in _CARD_START.finditer(s, c_start, c_end):
        _spend(WORK_CHECK)
        start = first.start()
        total = 0
        parts: list[str] = []
        pos = start
        while True:
            group = _CARD_GROUP.match(s, pos, c_end)
            if group is None:
                break
            a, b = group.span()
            size = b - a
            later = a > start
            if later and size < 2:
                break
            total += size
            if total > 19:
                break
            parts.append(s[a:b])
            if total >= 13:
                _spend(WORK_CHECK)
                digits = "".join(parts)
                if _is_card(digits):
                    runs.append((-total, start, b, digits))
            if later and size < 3:
                break
            pos = b + 1  # groups are joined by exactly one space or dash
    if not runs:
        return []
    runs.sort()
    taken = bytearray(c_end - c_start)
    hits: list[_Hit] = []
    for _, start, end, digits in runs:
        if taken.find(1, start - c_start, end - c_start) != -1:
            continue
        taken[start - c_start : end - c_start] = b"\x01" * (end - start)
        hits.append((CARD, start, end, digits))
    hits.sort(key=_start)
    return hits


def _ip_hits(s: str) -> list[_Hit]:
    hits: list[_Hit] = []
    if s.count(".") >= 3:
        for m in _IPV4.finditer(s):
            _spend(WORK_CHECK)
            try:
                addr = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            hits.append((IP, m.start(), m.end(), addr.compressed))
    if s.count(":") >= 2:
        for m in _IPV6.finditer(s):
            raw = m.group()
            if not _ANY_DIGIT.search(raw):
                continue
            _spend(WORK_CHECK)
            try:
                addr6 = ipaddress.IPv6Address(raw)
            except ValueError:
                continue
            hits.append((IP, m.start(), m.end(), addr6.compressed))
    return hits


class _RegionPlan(NamedTuple):
    region: str
    pattern: re.Pattern[str] | None  # None: plan too irregular to pre-check, always try
    lengths: frozenset[int]
    prefixes: tuple[str, ...]
    # Whether a national number must be written with its trunk prefix to count (see
    # _region_plan): this is what keeps "Order 30123456" from becoming a Berlin number.
    prefix_required: bool
    international: re.Pattern[str] | None


@lru_cache(maxsize=64)
def _region_plan(region: str) -> _RegionPlan:
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None:
        raise ValueError(f"unknown phone region {region!r}")
    prefixes: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = re.compile(meta.general_desc.national_number_pattern)
    parsing = meta.national_prefix_for_parsing or meta.national_prefix or ""
    if meta.national_prefix_transform_rule or not re.fullmatch(r"[0-9|]*", parsing):
        # Regions that rewrite prefixes (AR, BR, …) are left to phonenumbers entirely.
        pattern = None
    elif parsing:
        prefixes = tuple(p for p in parsing.split("|") if p)
    idd = meta.international_prefix
    return _RegionPlan(
        region=region,
        pattern=pattern,
        lengths=frozenset(meta.general_desc.possible_length),
        prefixes=prefixes,
        # People write national numbers with the trunk prefix ("030 …", "06 …", "8 …");
        # phonenumbers would also accept them bare, which turns plain 7-11 digit ids into
        # phones.  The NANP "1" is genuinely optional, so the US cannot be protected this
        # way; neither can plans without a prefix (ES, IT, …).
        prefix_required=bool(prefixes) and pattern is not None and meta.national_prefix != "1",
        international=re.compile(idd) if idd else None,
    )


def _region_could_match(plan: _RegionPlan, digits: str, starts: list[int]) -> bool:
    """Cheap necessary condition: some run of whole digit groups fits the region's plan.

    ``digits`` is the candidate's digits, ``starts`` where each group begins in it (plus
    the end).  The matcher only ever tries a candidate or pieces of it cut at punctuation,
    so checking every contiguous run of groups against the numbering-plan regex is a
    superset of what it could validate, at a fraction of its cost.
    """
    if plan.pattern is None:
        return True
    fullmatch = plan.pattern.fullmatch
    international = plan.international
    lengths = plan.lengths
    bare = not plan.prefix_required
    n = len(starts) - 1
    for i in range(n):
        a = starts[i]
        if international is not None and international.match(digits, a):
            return True
        prefix_len = -1
        for prefix in plan.prefixes:
            if digits.startswith(prefix, a):
                prefix_len = len(prefix)
                break
        for j in range(i + 1, n + 1):
            b = starts[j]
            if b - a > 17 + 4:
                break
            if bare and b - a in lengths and fullmatch(digits, a, b):
                return True
            if (
                prefix_len >= 0
                and b - a - prefix_len in lengths
                and fullmatch(digits, a + prefix_len, b)
            ):
                return True
    return False


def _trim_brackets(raw: str, start: int, end: int) -> tuple[int, int]:
    # The matcher keeps an opening "(" of "(+46 8 123 391)" but not its partner.
    while raw.startswith("(") and raw.count("(") > raw.count(")"):
        raw, start = raw[1:], start + 1
    while raw.endswith(")") and raw.count(")") > raw.count("("):
        raw, end = raw[:-1], end - 1
    return start, end


@lru_cache(maxsize=8192)
def _phones_in_window(
    window: str, region: str | None, whole: bool = False
) -> tuple[tuple[int, int, str], ...]:
    """The phones phonenumbers' matcher finds in `window` for `region`.

    `whole`: only whether the window's candidate is one number as a whole; the matcher
    then gives up after its first failed try instead of trying every piece of it (each
    piece of a long run is its own candidate there, see _long_candidate_phones).
    """
    _spend(WORK_MATCHER)
    plan = _region_plan(region) if region is not None else None
    found = []
    tries = 1 if whole else 65535
    for m in PhoneNumberMatcher(window, region, leniency=Leniency.VALID, max_tries=tries):
        start, end = _trim_brackets(m.raw_string, m.start, m.end)
        if plan is not None and plan.prefix_required:
            digits = "".join(_DIGIT_GROUPS.findall(window[start:end]))
            written_international = window[start] == "+" or (
                plan.international is not None and plan.international.match(digits)
            )
            if not written_international and not digits.startswith(plan.prefixes):
                continue
        e164 = phonenumbers.format_number(m.number, PhoneNumberFormat.E164)
        found.append((start, end, e164))
    return tuple(found)


class _RegionsGate(NamedTuple):
    """A cheap necessary condition for "some configured region could match" (see below)."""

    international: re.Pattern[str] | None  # any region's international call prefix
    bare_lengths: frozenset[int]
    bare: re.Pattern[str] | None  # national patterns of regions that allow no trunk prefix
    prefixed: tuple[tuple[str, frozenset[int], re.Pattern[str]], ...]  # per trunk prefix


def _alternation(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in dict.fromkeys(patterns)))


@lru_cache(maxsize=64)
def _region_plans(regions: tuple[str, ...]) -> tuple[_RegionPlan, ...]:
    return tuple(map(_region_plan, regions))


@lru_cache(maxsize=64)
def _regions_gate(regions: tuple[str, ...]) -> _RegionsGate:
    """One check standing in for `_region_could_match` over all the regions at once.

    It accepts whatever any region's check accepts (every region's length set, pattern
    and trunk prefixes are merged, so it may accept more), so a candidate it rejects
    can skip the per-region checks; most digit runs in real traffic (order ids, amounts)
    are rejected here after a few C-level calls instead of one Python loop per region.
    Regions without a pattern (always tried) do not take part.
    """
    international: list[str] = []
    bare_lengths: set[int] = set()
    bare: list[str] = []
    by_prefix: dict[str, tuple[set[int], list[str]]] = {}
    for plan in map(_region_plan, regions):
        if plan.pattern is None:
            continue
        if plan.international is not None:
            international.append(plan.international.pattern)
        if not plan.prefix_required:
            bare_lengths |= plan.lengths
            bare.append(plan.pattern.pattern)
        for prefix in plan.prefixes:
            lengths, patterns = by_prefix.setdefault(prefix, (set(), []))
            lengths |= plan.lengths
            patterns.append(plan.pattern.pattern)
    return _RegionsGate(
        international=_alternation(international) if international else None,
        bare_lengths=frozenset(bare_lengths),
        bare=_alternation(bare) if bare else None,
        prefixed=tuple(
            (prefix, frozenset(lengths), _alternation(patterns))
            for prefix, (lengths, patterns) in by_prefix.items()
        ),
    )


def _gate_could_match(gate: _RegionsGate, digits: str, starts: list[int]) -> bool:
    """`_region_could_match` for the merged plan of `_regions_gate` (same loop, same cuts)."""
    n = len(starts) - 1
    for i in range(n):
        a = starts[i]
        if gate.international is not None and gate.international.match(digits, a):
            return True
        for j in range(i + 1, n + 1):
            b = starts[j]
            if b - a > 17 + 4:
                break
            if (
                gate.bare is not None
                and b - a in gate.bare_lengths
                and gate.bare.fullmatch(digits, a, b)
            ):
                return True
            for prefix, lengths, pattern in gate.prefixed:
                if (
                    b - a - len(prefix) in lengths
                    and digits.startswith(prefix, a)
                    and pattern.fullmatch(digits, a + len(prefix), b)
                ):
                    return True
    return False


@lru_cache(maxsize=16384)
def _candidate_phones(
    window: str, c_start: int, c_end: int, regions: tuple[str, ...], whole: bool = False
) -> tuple[tuple[int, int, str], ...]:
    """Phones in the candidate window[c_start:c_end], as spans relative to the window.

    `window` is the candidate with _CONTEXT_BEFORE/_CONTEXT_AFTER characters around it,
    which is everything the decision looks at, so the result is memoised: the same
    candidate recurs in the next detection round, in repeated values (an order id in
    every tool call) and in repeated bodies.
    """
    text = window[c_start:c_end]
    if _NOT_A_PHONE.fullmatch(text):
        return ()
    groups = _DIGIT_GROUPS.findall(text)
    _spend(len(groups) * WORK_CHECK)
    digits = "".join(groups)
    total_digits = len(digits)
    # ISBN-13s and hyphenated ISBN-10s ("978-3-16-148410-0", "0-306-40615-2") carry a
    # checksum; a leading-0 ISBN-10 would otherwise pass as a European number.
    isbn_shaped = total_digits == 13 or (total_digits == 10 and len(groups) == 4)
    if isbn_shaped and stdnum_isbn.is_valid(text):
        return ()
    # Passes: the international reading first (a candidate has at least 7 digits, so it
    # always runs), then each region in order while 7 digits remain uncovered.
    accepted: list[tuple[int, int, str]] = []
    covered = 0
    intl = _INTERNATIONAL_START.match(text)
    if intl is not None:
        if intl.group().endswith("00"):
            # phonenumbers reads "00" only for a home region; outside one it needs
            # "+".  " +" keeps every offset intact.  Not after a word character:
            # "DE00 1234 …" is a (failed) IBAN, not a call to +12.  (The character before
            # is inside the window unless the "00" starts the whole text.)
            at = c_start + text.index("00")
            if at == 0 or not (window[at - 1].isalnum() or window[at - 1] == "_"):
                rewritten = f"{window[:at]} +{window[at + 2 :]}"
                covered += _accept(accepted, window, rewritten, None, whole)
        else:
            covered += _accept(accepted, window, window, None, whole)
    starts: list[int] | None = None
    gate_open = True
    for plan in _region_plans(regions):
        if total_digits - covered < _PHONE_MIN_DIGITS:
            break
        if plan.pattern is not None:
            if starts is None:
                starts = [0, *itertools.accumulate(map(len, groups))]
                gate_open = _gate_could_match(_regions_gate(regions), digits, starts)
            if not gate_open or not _region_could_match(plan, digits, starts):
                continue
        covered += _accept(accepted, window, window, plan.region, whole)
    return tuple(accepted)


def _accept(
    accepted: list[tuple[int, int, str]],
    window: str,
    win: str,
    region: str | None,
    whole: bool = False,
) -> int:
    """Add the phones phonenumbers finds in `win` (`window`, or a rewrite of it with the
    same offsets) that overlap none already accepted; return how many digits they hold."""
    covered = 0
    for start, end, e164 in _phones_in_window(win, region, whole):
        if win is not window and win[start] == "+" and window[start] == "0":
            start -= 1  # give back the first "0" of the "00" we rewrote
        if any(start < b and a < end for a, b, _ in accepted):
            continue
        accepted.append((start, end, e164))
        covered += sum(map(str.isdigit, window[start:end]))
    return covered


def _phone_hits(s: str, regions: tuple[str, ...]) -> list[_Hit]:
    hits: list[_Hit] = []
    candidates = _PHONE_CANDIDATE_ASCII if s.isascii() else _PHONE_CANDIDATE
    for cand in candidates.finditer(s):
        c_start, c_end = cand.span()
        if c_end - c_start > _LONG_CANDIDATE:
            hits.extend(_long_candidate_phones(s, c_start, c_end, regions))
            continue
        hits.extend(_candidate_hits(s, c_start, c_end, regions))
    return hits


def _candidate_hits(s: str, c_start: int, c_end: int, regions: tuple[str, ...]) -> list[_Hit]:
    """The phones in the candidate s[c_start:c_end]: in it as a whole or, when it holds
    none, in its longest prefix of whole digit groups that holds one.

    A number is often followed by another that is not part of it ("+1 212 555 0100 12
    Queensway", "… 4th floor"), and phonenumbers refuses the run as a whole. Trying the
    shorter prefixes finds the phone whatever the trailing number belongs to, so the
    answer does not change once that number's word has been replaced by a pseudonym (an
    address, say): redaction stays idempotent. Dropped digits are hidden from the
    matcher (same offsets), which would otherwise extend its match into them again.
    """
    lo = c_start - _CONTEXT_BEFORE if c_start > _CONTEXT_BEFORE else 0
    after = s[c_end : c_end + _CONTEXT_AFTER]
    end = c_end
    if end < len(s) and s[end].isalpha():
        # The last digits are glued to a word ("4th", "12kg"): never part of a number.
        end = _previous_group_end(s, c_start, end)
    while end == c_end or sum(map(str.isdigit, s[c_start:end])) >= _PHONE_MIN_DIGITS:
        window = s[lo:end] + _hide_digits(s[end:c_end]) + after
        found = _candidate_phones(window, c_start - lo, end - lo, regions)
        if found:
            return [(PHONE, lo + start, lo + stop, e164) for start, stop, e164 in found]
        end = _previous_group_end(s, c_start, end)
    return []


def _previous_group_end(s: str, c_start: int, end: int) -> int:
    """Where the candidate ends without its last whitespace-separated token: a number
    written as one token ("0-306-40615-2", an ISBN) is judged whole, never in pieces."""
    while end > c_start and not s[end - 1].isspace():
        end -= 1
    while end > c_start and not s[end - 1].isdigit():
        end -= 1
    return end


def _hide_digits(text: str) -> str:
    return re.sub(r"\d", "_", text)


# A candidate longer than this is not one phone number written out (E.164 has at most 15
# digits; with an international prefix, a trunk "(0)" and separators a real number stays
# well under it) but a list or a table of numbers: see _long_candidate_phones.
_LONG_CANDIDATE = 64
# The most digits one phone number can be written with: 15 (E.164) + a 4-digit
# international call prefix ("0011") + a trunk "0".
_MAX_PHONE_DIGITS = 20


def _long_candidate_phones(
    s: str, c_start: int, c_end: int, regions: tuple[str, ...]
) -> list[_Hit]:
    """Phones in a long run of digit groups, s[c_start:c_end], in time linear in its length.

    Handing the whole run to phonenumbers' matcher, as a short candidate is, costs time
    with the square of its length here (every window is re-scanned per region) and, past
    its 65,535 tries, silently stops looking.  Instead every run of whole groups that
    could be one number (7 to 20 digits, so a bounded number per group) and that passes
    the numbering-plan pre-check is checked on its own, exactly as a short candidate of
    that text would be; overlaps go to the longest, then the earliest.  A number in a
    list of numbers is found wherever it starts (the matcher, given the whole list, only
    finds one that happens to start one of its own chunks).
    """
    groups = [m.span() for m in _DIGIT_GROUPS.finditer(s, c_start, c_end)]
    _spend(len(groups) // 2)  # listing them is work too (a run of 1-digit groups)
    gate = _regions_gate(regions)
    always = any(plan.pattern is None for plan in _region_plans(regions))
    hits: list[_Hit] = []
    n = len(groups)
    for i in range(n):
        first = groups[i][0]
        lead = first
        while lead > c_start and s[lead - 1] in "+(":
            lead -= 1
        # Only the candidate's own start has text before it worth showing the matcher
        # (a letter glued to the number); inside the run, what is before is more digits.
        lo = max(0, c_start - _CONTEXT_BEFORE) if i == 0 else lead
        # Read internationally whatever the regions ("+49 …", "0049 …"), as a short
        # candidate always is.
        international = _INTERNATIONAL_START.match(s, lead) is not None
        digits = ""
        for j in range(i, n):
            a, b = groups[j]
            digits += s[a:b]
            if len(digits) > _MAX_PHONE_DIGITS:
                break
            if len(digits) < _PHONE_MIN_DIGITS:
                continue
            _spend(WORK_CHECK)
            if not (international or always or _run_could_match(gate, digits)):
                continue
            hi = c_end + _CONTEXT_AFTER if j == n - 1 else b
            window = s[lo:hi]
            for start, end, e164 in _candidate_phones(window, lead - lo, b - lo, regions, True):
                hits.append((PHONE, lo + start, lo + end, e164))
    return _resolve(hits)


def _run_could_match(gate: _RegionsGate, digits: str) -> bool:
    """`_gate_could_match` for exactly one run of digits (not its sub-runs)."""
    if gate.international is not None and gate.international.match(digits):
        return True
    n = len(digits)
    if gate.bare is not None and n in gate.bare_lengths and gate.bare.fullmatch(digits):
        return True
    for prefix, lengths, pattern in gate.prefixed:
        if (
            n - len(prefix) in lengths
            and digits.startswith(prefix)
            and pattern.fullmatch(digits, len(prefix))
        ):
            return True
    return False


# ------------------------------------------------------------------------- orchestration


def _longest_first(hit: _Hit) -> tuple[int, int]:
    return hit[1] - hit[2], hit[1]


def _resolve(hits: list[_Hit]) -> list[_Hit]:
    """Keep non-overlapping hits, longest first, then earliest."""
    if len(hits) < 2:
        return hits
    kept: list[_Hit] = []
    ordered = sorted(hits, key=_longest_first)
    if len(hits) <= 16:
        for hit in ordered:
            start, end = hit[1], hit[2]
            for k in kept:
                if start < k[2] and k[1] < end:
                    break
            else:
                kept.append(hit)
        return kept
    # Many hits: mark the characters already taken, so each hit costs its own length
    # rather than one comparison per hit kept so far.
    base = min(hit[1] for hit in hits)
    taken = bytearray(max(hit[2] for hit in hits) - base)
    for hit in ordered:
        start, end = hit[1] - base, hit[2] - base
        if taken.find(1, start, end) == -1:
            taken[start:end] = b"\x01" * (end - start)
            kept.append(hit)
    return kept


def _outside(spans: list[tuple[int, int]]):
    """A test of whether a span lies inside none of `spans`, in O(log n) a question."""
    if not spans:
        return lambda start, end: True
    ordered = sorted(spans)
    starts = [a for a, _ in ordered]
    reach = list(itertools.accumulate((b for _, b in ordered), max))

    def outside(start: int, end: int) -> bool:
        # Some span contains [start, end) iff the furthest end of those starting at or
        # before `start` reaches `end`.
        k = bisect_right(starts, start)
        return k == 0 or reach[k - 1] < end

    return outside


def _mask(s: str, spans: Iterable[tuple[int, int]]) -> str:
    # Same length as the original so offsets stay valid; shaped like a pseudonym so the
    # detectors see the same boundaries they will see in the redacted output.
    parts: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        parts.append(s[pos:start])
        parts.append("<" + "_" * (end - start - 2) + ">")
        pos = end
    parts.append(s[pos:])
    return "".join(parts)


def _structured_hits(s: str) -> list[_Hit]:
    hits: list[_Hit] = []
    if "@" in s:
        hits.extend(_email_hits(s))
    if _ANY_DIGIT.search(s) is not None:
        ibans, look_alikes = _iban_hits(s)
        hits.extend(ibans)
        if _ENOUGH_DIGITS_FOR_A_CARD.match(s):
            outside = _outside(look_alikes)
            hits.extend(card for card in _card_hits(s) if outside(card[1], card[2]))
        hits.extend(_ip_hits(s))
    return _resolve(hits)


_find_digit = _ANY_DIGIT.search


def _has_at_or_digit(text: str) -> bool:
    """Whether a structured detector could find anything: each needs an "@" or a digit."""
    return "@" in text or _find_digit(text) is not None


def _needs_scan(text: str) -> bool:
    """Whether `text` could hold anything: the structured detectors need an "@" or a
    digit, a name or a street address needs two words (a space or a line break)."""
    return "@" in text or " " in text or "\n" in text or _find_digit(text) is not None


def _key_plan(key: str, personal_fields: frozenset[str]) -> tuple[str | None, bool]:
    """For a dict key: the kind it declares (or None), and whether it needs a scan."""
    kind = _field_kind(key.strip()) if key.strip().casefold() in personal_fields else None
    return kind, _needs_scan(key)


_KEY_PLANS_MAX = 4096


@lru_cache(maxsize=64)
def _key_plans(personal_fields: frozenset[str]) -> dict[str, tuple[str | None, bool]]:
    """A memo of `_key_plan` per set of declared fields (dict keys repeat in every body);
    it stops growing at _KEY_PLANS_MAX keys."""
    return {}


# Short strings recur all the time (the same order id in every tool call, dates, status
# values), so their results are memoised; long free text goes through uncached.
_MEMO_MAX_LEN = 256


def _detect(text: str, regions: tuple[str, ...], people: bool = True) -> tuple[_Hit, ...]:
    if not _needs_scan(text):
        return ()
    return _detect_scanned(text, regions, people)


def _detect_scanned(text: str, regions: tuple[str, ...], people: bool = True) -> tuple[_Hit, ...]:
    """`_detect` for a text the caller has already found to need a scan."""
    if len(text) <= _MEMO_MAX_LEN and type(text) is str:
        return _detect_memo(text, regions, people)
    return _scan(text, regions, people)


@lru_cache(maxsize=8192)
def _detect_memo(text: str, regions: tuple[str, ...], people: bool) -> tuple[_Hit, ...]:
    return _scan(text, regions, people)


def _scan(text: str, regions: tuple[str, ...], people: bool = True) -> tuple[_Hit, ...]:
    masked = text
    if "<" in text:
        masked = _mask(masked, (m.span() for m in PSEUDONYM_RE.finditer(text)))
    found: list[_Hit] = []
    if _has_at_or_digit(masked):
        masked = _scan_structured(masked, regions, found)
    if people and (" " in masked or "\n" in masked):
        # Names and streets last, on the text with every structured value and pseudonym
        # masked: an email's local part is never read as a name, and spans cannot
        # overlap. Linear (traces/names.py) and at most ~1 µs a character, so a request
        # at the body limit costs about a second here at worst; it is not charged to the
        # budget, which bounds the structured detectors' far larger worst case.
        # A few rounds, as for the structured detectors: masking a name can change how
        # the words around it read (a run of capitalised words cut short), and a second
        # look must find what the next redaction would, or redact() is not idempotent.
        # Bounded, so that chained text cannot buy a round per name.
        for _ in range(_NAME_ROUNDS):
            spans = names.find_people_and_addresses(masked)
            if not spans:
                break
            found.extend((span.kind, span.start, span.end, span.normalized) for span in spans)
            masked = _mask(masked, ((span.start, span.end) for span in spans))
    found.sort(key=_start)
    return tuple(found)


_NAME_ROUNDS = 4


def _scan_structured(masked: str, regions: tuple[str, ...], found: list[_Hit]) -> str:
    """Rounds of the structured detectors until nothing new is found; returns the text
    with every value found masked."""
    while True:
        # A round costs its length: what masking one value uncovers is only seen by the
        # next round, so an adversary can chain values to force many rounds.
        _spend(len(masked) // WORK_PER_SCANNED_CHARS)
        structured = _structured_hits(masked)
        if structured:
            masked = _mask(masked, ((h[1], h[2]) for h in structured))
        if _ENOUGH_DIGITS_FOR_A_PHONE.match(masked):
            phones = _resolve(_phone_hits(masked, regions))
        else:
            phones = []
        if phones:
            masked = _mask(masked, ((h[1], h[2]) for h in phones))
        if not structured and not phones:
            break
        found.extend(structured)
        found.extend(phones)
        if not _has_at_or_digit(masked):
            break  # nothing left that another round could find
    return masked


def _start(hit: _Hit) -> int:
    return hit[1]


def _normalize_regions(regions: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for region in regions:
        code = region.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {region!r}")
        if code not in out:
            out.append(code)
    return tuple(out)


def find_pii(text: str, *, phone_regions: Iterable[str] = ()) -> list[PiiMatch]:
    """PII in ``text``, sorted by start, non-overlapping; existing pseudonyms are skipped."""
    regions = _normalize_regions(phone_regions)
    return [PiiMatch(kind, a, b, text[a:b]) for kind, a, b, _ in _detect(text, regions)]


def _clear_caches() -> None:
    """Forget every memoised detection (benchmarks and tests; never needed for results)."""
    for memo in (_detect_memo, _candidate_phones, _phones_in_window, _token):
        memo.cache_clear()


# ------------------------------------------------------------------------------ redactor

_NON_ALNUM = re.compile(r"[^A-Z0-9]+", re.ASCII)


@lru_cache(maxsize=1024)
def _field_kind(key: str) -> str:
    return _NON_ALNUM.sub("_", key.upper()) or "FIELD"


@dataclass(frozen=True)
class Redactor:
    key: bytes = field(repr=False)  # the HMAC secret must never end up in a log line
    personal_fields: frozenset[str] = frozenset()  # already casefolded by make_redactor
    phone_regions: tuple[str, ...] = ()
    # Person names and street addresses in free text. Off for what a reviewer types: that
    # text is the decision (a reply that greets the customer by name goes out as typed).
    people: bool = True

    def without_people(self) -> Redactor:
        """This redactor, for text people type: structured identifiers only."""
        return replace(self, people=False)

    def redact_text(
        self, text: str, found: dict[str, str] | None = None, budget: Budget | None = None
    ) -> str:
        if not _needs_scan(text):
            return text
        if budget is None:
            return self._redact_scanned(text, found)
        reset = _BUDGET.set(budget)
        try:
            return self._redact_scanned(text, found)
        finally:
            _BUDGET.reset(reset)

    def _redact_scanned(self, text: str, found: dict[str, str] | None) -> str:
        hits = _detect_scanned(text, self.phone_regions, self.people)
        if not hits:
            return text
        budget = _BUDGET.get()
        parts: list[str] = []
        pos = 0
        for kind, start, end, normalized in hits:
            parts.append(text[pos:start])
            token = _token(self.key, kind, normalized)
            if budget is not None:
                budget.value(token)
            if found is not None:
                found.setdefault(token, text[start:end])
            parts.append(token)
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def redact(
        self, value: Any, found: dict[str, str] | None = None, budget: Budget | None = None
    ) -> Any:
        """Deep-copy a JSON value with every string (and dict key) redacted.

        `found`, when given, collects pseudonym → the text it replaced, so the caller
        can hand the map back to whoever sent the values (and to no one else).
        `budget`, when given, bounds the work and the distinct personal values (shared
        by every call made for one request); past either it raises a RedactionRefused.
        """
        # The collector and the budget are per call: one Redactor serves many threads.
        if budget is None:
            return self._walk(value, None, found)
        reset = _BUDGET.set(budget)
        try:
            return self._walk(value, None, found)
        finally:
            _BUDGET.reset(reset)

    def _pseudonym(self, kind: str, normalized: str, original: Any, found) -> str:
        token = _token(self.key, kind, normalized)
        budget = _BUDGET.get()
        if budget is not None:
            budget.value(token)
        if found is not None:
            found.setdefault(token, original)
        return token

    def _walk(self, value: Any, kind: str | None, found: dict | None = None) -> Any:
        # `kind` is set below a declared personal field: every leaf there is pseudonymised
        # whole, whatever its type, under the innermost declared key's kind.
        # (Exact-type checks first, as JSON gives plain str/dict/list; isinstance still
        # handles subclasses the same way, and no type can be two of str/dict/list.)
        cls = type(value)
        if cls is str or (cls is not dict and cls is not list and isinstance(value, str)):
            if kind is None:
                return self.redact_text(value, found)
            if PSEUDONYM_RE.fullmatch(value):
                return value  # already redacted: keep redact() idempotent
            return self._pseudonym(kind, value.strip().casefold(), value, found)
        if cls is dict or isinstance(value, dict):
            out = {}
            personal = self.personal_fields
            plans = _key_plans(personal)
            for k, v in value.items():
                child = kind
                if type(k) is str:
                    plan = plans.get(k)
                    if plan is None:
                        plan = _key_plan(k, personal)
                        if len(plans) < _KEY_PLANS_MAX:
                            plans[k] = plan
                    declared, scan = plan
                    if declared is not None:
                        child = declared
                    if scan:
                        k = self._redact_scanned(k, found)
                elif isinstance(k, str):
                    if personal and k.strip().casefold() in personal:
                        child = _field_kind(k.strip())
                    k = self.redact_text(k, found)
                if child is None:
                    # The common leaves, without a call to _walk (same outcome).
                    leaf = type(v)
                    if leaf is str:
                        if _needs_scan(v):
                            v = self._redact_scanned(v, found)
                        out[k] = v
                        continue
                    if leaf is float or leaf is bool or v is None:
                        out[k] = v
                        continue
                out[k] = self._walk(v, child, found)
            return out
        if cls is list or isinstance(value, list | tuple):
            return [self._walk(v, kind, found) for v in value]
        if value is None:
            return None  # an absent value discloses nothing
        if isinstance(value, bool | int | float):
            if kind is not None:
                return self._pseudonym(kind, str(value).strip().casefold(), value, found)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                digits = str(value)
                if _is_card(digits):
                    return self._pseudonym(CARD, digits, value, found)
            return value
        # Fail closed: an unknown type could carry anything.
        raise TypeError(f"cannot redact value of type {type(value).__name__}")


def make_redactor(
    *,
    key: str | bytes,
    personal_fields: Iterable[str] = (),
    phone_regions: Iterable[str] = (),
) -> Redactor:
    secret = key.encode() if isinstance(key, str) else bytes(key)
    if not secret:
        raise ValueError("the redaction key must not be empty")
    if isinstance(personal_fields, str):
        raise TypeError("personal_fields must be a collection of field names, not a str")
    if isinstance(phone_regions, str):
        raise TypeError("phone_regions must be a collection of region codes, not a str")
    fields = frozenset(f.strip().casefold() for f in personal_fields if f.strip())
    return Redactor(
        key=secret,
        personal_fields=fields,
        phone_regions=_normalize_regions(phone_regions),
    )
