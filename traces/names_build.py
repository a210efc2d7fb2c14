"""Derive the compact name gazetteer that traces/names.py loads, from names-dataset.

    python -m traces.names_build            # writes the default path (see names.py)
    python -m traces.names_build OUT.tsv

names-dataset (MIT, a pinned dependency) ships 727k first names and 984k surnames from
105 countries as two pickles; loading them costs ~15 s and ~1 GB, far too much for every
gunicorn worker.  This runs once at install (``make install``) and keeps only what the
detector needs: every name ranked within the top ``MAX_RANK`` of at least one country,
keyed like the detector looks them up (casefolded, accents stripped), with its best rank
as a first name and as a surname.  The output is a few MB and loads in well under a second.

The pickles are read without importing names_dataset (whose import pulls numpy and
pycountry), from the package's installed files.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import re
import sys
from pathlib import Path

from traces.names import DATA_PATH, name_key

# What the detector's tokeniser can produce as one word: letters joined by single hyphens or
# apostrophes.  Everything else in the data ("^m", "a.b", emoji) could never be looked up.
_WORD = re.compile(r"[^\W\d_]{2,}(?:[-'\u2019][^\W\d_]+)*")

MAX_RANK = 5000


def _dataset_dir() -> Path:
    spec = importlib.util.find_spec("names_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("names-dataset is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "v3"


def _best_ranks(path: Path) -> dict[str, int]:
    with gzip.open(path, "rb") as fh:
        table = pickle.load(fh)  # noqa: S301 - see the import
    best: dict[str, int] = {}
    for name, info in table.items():
        ranks = [r for r in (info.get("rank") or {}).values() if r]
        if not ranks:
            continue
        rank = min(ranks)
        if rank > MAX_RANK:
            continue
        key = name_key(name.strip())
        # Only single words: the detector looks names up one token at a time.
        if not _WORD.fullmatch(key):
            continue
        if rank < best.get(key, MAX_RANK + 1):
            best[key] = rank
    return best


def build(out: Path) -> int:
    src = _dataset_dir()
    first = _best_ranks(src / "first_names.pkl.gz")
    last = _best_ranks(src / "last_names.pkl.gz")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("# key\tfirst-name rank\tsurname rank (0: not one); from names-dataset\n")
        for key in sorted(first.keys() | last.keys()):
            fh.write(f"{key}\t{first.get(key, 0)}\t{last.get(key, 0)}\n")
    tmp.replace(out)
    return len(first.keys() | last.keys())


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DATA_PATH
    n = build(out)
    print(f"wrote {n} names to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
