"""Action labels as a user types them: a word means the label itself (any case), else every label
containing it; a word that matches none gets the labels spelled like it.  Used by the query
(labels an index holds) and by ``vidx actions labels`` (a model's vocabulary)."""

from __future__ import annotations

import difflib


def find_labels(word: str, labels: list[str]) -> list[str]:
    """The labels a user's word means: the label itself (any case), else every label containing it."""
    w = word.strip().lower()
    exact = [x for x in labels if x.lower() == w]
    return exact or [x for x in labels if w in x.lower()]


def closest_labels(word: str, labels: list[str], n: int = 5) -> list[str]:
    """Labels spelled like ``word`` or sharing a word with it, for a word that matches none."""
    w = word.strip().lower()
    low = {x.lower(): x for x in labels}
    close: list[str] = []
    words = {t for x in low for t in x.split()}
    for p in (p for p in w.replace("-", " ").split() if len(p) >= 3):  # "swiming" -> "swimming backstroke", ...
        for key in difflib.get_close_matches(p, words, 2, cutoff=0.75):
            close += [x for x in low if key in x.split()]
    close += difflib.get_close_matches(w, list(low), n, cutoff=0.6)  # "basket ball" -> "playing basketball"
    return [low[x] for x in dict.fromkeys(close)][:n]
