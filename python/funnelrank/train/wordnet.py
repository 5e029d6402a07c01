"""WordNet offline, for near-miss negatives: Debian's `wordnet-base` files read through NLTK's reader.

Debian installs the WordNet 3.0 database under ``/usr/share/wordnet`` without the ``lexnames`` file NLTK's
reader needs; :func:`load_wordnet` lays out a directory NLTK accepts (a copy of the database files, and
``lexnames`` written from the package's own ``lexnames(5WN)`` manual page) in funnelrank's cache, once.

    >>> wn = load_wordnet()
    >>> sorted({a.name() for l in wn.synset("increase.v.01").lemmas() for a in l.antonyms()})
    ['decrease']
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from pathlib import Path
from typing import Any

__all__ = ["WORDNET_DIR", "load_wordnet"]

WORDNET_DIR = Path(os.environ.get("FUNNELRANK_WORDNET", "/usr/share/wordnet"))
_MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")


def load_wordnet() -> Any:
    """An NLTK ``WordNetCorpusReader`` over the system's WordNet. FileNotFoundError saying what to install
    when the database (``apt-get install wordnet-base``) or NLTK (``pip install nltk``) is missing."""
    if not (WORDNET_DIR / "data.noun").is_file():
        raise FileNotFoundError(f"no WordNet database in {WORDNET_DIR}: apt-get install wordnet-base")
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as exc:
        raise FileNotFoundError("near-miss negatives need NLTK: pip install 'funnelrank[dev]'") from exc
    from funnelrank.files import cache_dir

    root = cache_dir("nltk_data")
    target = root / "corpora" / "wordnet"
    if not (target / "lexnames").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for f in WORDNET_DIR.iterdir():  # copies: NLTK refuses files outside its root, links included
            if f.is_file() and not (target / f.name).exists():
                shutil.copyfile(f, target / f.name)
        if not _MAN_PAGE.is_file():
            raise FileNotFoundError(f"{_MAN_PAGE} is missing (it comes with wordnet-base)")
        rows = re.findall(r"^(\d\d)\t(\S+)\s*\t", gzip.decompress(_MAN_PAGE.read_bytes()).decode(), flags=re.M)
        pos = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
        tmp = target / "lexnames.tmp"
        tmp.write_text("".join(f"{n}\t{name}\t{pos[name.split('.')[0]]}\n" for n, name in rows))
        os.replace(tmp, target / "lexnames")
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return WordNetCorpusReader(str(target), None)
