"""Near-miss negatives made from positives: "right tokens, wrong meaning".

A positive passage answers its query; swapping one of the query's words *inside the passage* for its
opposite (a WordNet antonym: children -> parent, increase -> decrease, compress -> decompress), for a sibling
of the same kind (a WordNet co-hyponym: ibuprofen -> naproxen, fahrenheit -> celsius), or a number the query
names for another number gives a passage with nearly the same tokens that no longer answers it. A cross-
encoder that reads the pair together can learn to tell them apart; a bi-encoder barely can.

    >>> wn = load_wordnet()
    >>> make_near_misses("dose of ibuprofen for children", "Ibuprofen for children: 10 mg per kg.", wn,
    ...                  random.Random(0))  # doctest: +SKIP
    ['Ibuprofen for parent: 10 mg per kg.', 'Naproxen for children: 10 mg per kg.']
"""

from __future__ import annotations

import random
import re
from typing import Any

__all__ = ["make_near_misses"]

_WORD = re.compile(r"[A-Za-z][A-Za-z-]*|\d+(?:\.\d+)?")
_SKIP = frozenset(
    "the a an of for to in on at by with and or not is are was were be been what which who whom how why when "
    "where does do did can could should would will may might from into than then that this these those it its "
    "as about much many most more less very there their they them your you our we his her".split()
)


MIN_SIBLING_DEPTH = 7
"""Co-hyponyms are used only for nouns at least this deep in WordNet's hierarchy."""


def _replacements(word: str, wn: Any) -> list[str]:
    """Antonyms first, then co-hyponyms of the word's most frequent sense: single lowercase words only."""
    lemma = wn.morphy(word) or word
    synsets = wn.synsets(lemma)
    out: list[str] = []
    for s in synsets:
        for lem in s.lemmas():
            if lem.name().lower() == lemma:
                out.extend(a.name() for a in lem.antonyms())
    nouns = [s for s in synsets if s.pos() == "n"]
    # Siblings of specific kinds only (drugs, units, animals: deep in the noun hierarchy); abstract nouns'
    # siblings are often near-synonyms (risk -> menace), which would be wrong negatives.
    if nouns and nouns[0].min_depth() >= MIN_SIBLING_DEPTH:
        first = nouns[0]
        for hyper in first.hypernyms()[:2]:
            for sib in hyper.hyponyms():
                if sib != first:
                    out.append(sib.lemmas()[0].name())
    seen, keep = {lemma, word}, []
    for r in out:
        r = r.lower()
        if r.isalpha() and r not in seen and len(r) > 2:
            seen.add(r)
            keep.append(r)
    return keep


def _swap(text: str, surface: str, replacement: str) -> str:
    def repl(m: re.Match[str]) -> str:
        w = m.group(0)
        return replacement.capitalize() if w[:1].isupper() else replacement

    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(surface)}(?![A-Za-z0-9])", repl, text, flags=re.I)


def make_near_misses(query: str, passage: str, wn: Any, rng: random.Random, limit: int = 3) -> list[str]:
    """Up to `limit` variants of `passage`, each with one query word (or number) swapped where the passage
    uses it (antonym, else co-hyponym; a number for another). Different from the passage and each other."""
    passage_words = {w.lower() for w in _WORD.findall(passage)}
    terms = [w for w in dict.fromkeys(t.lower() for t in _WORD.findall(query)) if w not in _SKIP and len(w) > 2
             or w[:1].isdigit()]
    rng.shuffle(terms)
    variants: list[str] = []
    for term in terms:
        if len(variants) >= limit:
            break
        if term[:1].isdigit():
            if term not in passage_words:
                continue
            value = float(term)
            other = str(int(value * rng.choice((2, 3, 10)) + rng.randint(1, 9))) if value == int(value) else f"{value * 2:g}"
            variant = _swap(passage, term, other)
        else:
            surface = next((w for w in passage_words if w == term or (wn.morphy(w) or w) == (wn.morphy(term) or term)), None)
            if surface is None:
                continue
            options = _replacements(term, wn)
            if not options:
                continue
            variant = _swap(passage, surface, options[0] if rng.random() < 0.6 else rng.choice(options[:5]))
        if variant != passage and variant not in variants:
            variants.append(variant)
    return variants
