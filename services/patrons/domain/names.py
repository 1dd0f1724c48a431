"""Name normalisation for the desk search (P2).

Italian names come with accents ("Nicolò"), apostrophes ("D'Angelo", "D’Angelo") and particles
written with or without a space ("De Luca", "Deluca"). The operator types whatever is quickest, so
the search key folds all of that away: accents stripped, case folded, and every character that is
not a letter or a digit dropped. "D'Angelo" -> "dangelo", "De Luca" -> "deluca", "Nicolò" ->
"nicolo". The stored key is ``<surname key> <given-name key>`` (a space can never occur inside a
compacted key, and it sorts before every letter and digit), so a prefix range over one indexed
column answers "surname starts with"; the given-name key, stored too, narrows the range.
"""

from __future__ import annotations

import unicodedata

#: Letters that do not decompose into base + accent but have an obvious ASCII spelling.
_SPECIAL = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "ae",
        "ø": "o",
        "Ø": "o",
        "œ": "oe",
        "Œ": "oe",
        "đ": "d",
        "Đ": "d",
        "ł": "l",
        "Ł": "l",
        "þ": "th",
        "Þ": "th",
        "ı": "i",
    }
)

#: Separates the surname key from the given-name key in the stored search key.
KEY_SEPARATOR = " "


def fold(text: str) -> str:
    """Accent- and case-insensitive form of ``text``, keeping only letters and digits."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        if ch.isalnum():
            out.append(ch)
    return "".join(out).casefold()


def search_key(surname: str, given_name: str) -> str:
    """The indexed key of a patron: folded surname, a space, folded given name."""
    return f"{fold(surname)}{KEY_SEPARATOR}{fold(given_name)}"


def prefix_range(prefix: str) -> tuple[str, str]:
    """The half-open range ``[low, high)`` of keys starting with the folded ``prefix``.

    Used on the surname-first search key (surname prefix) and on the given-name key. Comparisons
    must be by code point (PostgreSQL ``COLLATE "C"``, SQLite's default BINARY).
    """
    low = fold(prefix)
    return low, _successor(low)


def _successor(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix`` (code-point order)."""
    if not prefix:
        return "\U0010ffff"
    return prefix + "\U0010ffff"


def display_name(surname: str, given_name: str) -> str:
    """How the desk lists a patron: "Surname Given-name"."""
    return f"{surname.strip()} {given_name.strip()}".strip()


def tidy(text: str) -> str:
    """Collapses runs of white space and trims; normalises to NFC so "ò" is stored one way."""
    return " ".join(unicodedata.normalize("NFC", text).split())
