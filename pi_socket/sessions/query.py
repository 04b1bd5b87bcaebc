"""Search queries and snippets: what a person types → a safe FTS5 MATCH expression; a hit's text → a snippet
with highlight ranges. Pure.

A query is words, ``"quoted phrases"`` and ``prefix*`` words; every other character separates words, as the
index's ``unicode61`` tokenizer does. The MATCH expression is built here from tokens, each written as an FTS5
string literal, so no user text is ever read as FTS5 syntax (``AND``, ``NEAR``, ``col:``, ``^``, an unbalanced
quote): a query either becomes a valid expression or is refused with :class:`QueryError`.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

MAX_QUERY_CHARS = 500
MAX_GROUPS = 16
MAX_TOKEN_CHARS = 100
SNIPPET_TOKENS = 24  # words of context around the first match
SNIPPET_MAX_CHARS = 300

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_PART = re.compile(r'"([^"]*)"?|(\S+)')


class QueryError(ValueError):
    """A query that cannot be searched (empty, too long, no words)."""


@dataclass(frozen=True)
class Group:
    """One thing that must match: a phrase of tokens (one token for a word); ``prefix``: the last token is a
    prefix."""

    tokens: tuple[str, ...]
    prefix: bool = False


def fold(text: str) -> str:
    """Case and diacritics folded, as ``unicode61 remove_diacritics 2`` folds them."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    return [fold(m.group())[:MAX_TOKEN_CHARS] for m in _TOKEN.finditer(text)]


def parse_query(query: str) -> list[Group]:
    if not isinstance(query, str) or not query.strip():
        raise QueryError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    groups: list[Group] = []
    for m in _PART.finditer(query):
        phrase, word = m.group(1), m.group(2)
        if phrase is not None:
            toks = tokens(phrase)
            prefix = phrase.rstrip().endswith("*")
        else:
            toks = tokens(word)
            prefix = word.endswith("*")
        if toks:
            groups.append(Group(tuple(toks), prefix))
    if not groups:
        raise QueryError("the query has no words to search for")
    if len(groups) > MAX_GROUPS:
        raise QueryError(f"the query has more than {MAX_GROUPS} words or phrases")
    return groups


def match_expression(groups: list[Group]) -> str:
    """The FTS5 MATCH expression: every group must match (AND); each is a quoted string (a phrase when it has
    several tokens), ``*`` after it for a prefix. Tokens hold only letters and digits, so quoting is exact."""
    parts = []
    for g in groups:
        literal = '"' + " ".join(g.tokens).replace('"', '""') + '"'
        parts.append(literal + ("*" if g.prefix else ""))
    return " AND ".join(parts)


def _matcher(groups: list[Group]) -> Callable[[str], bool]:
    exact: set[str] = set()
    prefixes: list[str] = []
    for g in groups:
        exact.update(g.tokens[:-1] if g.prefix else g.tokens)
        if g.prefix:
            prefixes.append(g.tokens[-1])

    def matches(tok: str) -> bool:
        return tok in exact or any(tok.startswith(p) for p in prefixes)

    return matches


WINDOW_BEFORE = 100  # characters kept around the first match before the words are looked at one by one
WINDOW_AFTER = 320
MAX_SCAN_CHARS = 20_000  # text without a fast match: only this much is looked at word by word


@functools.lru_cache(maxsize=64)
def _ascii_pattern(groups: tuple[Group, ...]) -> re.Pattern[str]:
    """The query's words as one case-insensitive regex with word edges: finds the first match in ASCII text
    without folding every word of it."""
    alts = []
    for g in groups:
        for i, tok in enumerate(g.tokens):
            prefix = g.prefix and i == len(g.tokens) - 1
            alts.append(re.escape(tok) + (r"[^\W_]*" if prefix else ""))
    return re.compile(r"(?<![^\W_])(?:" + "|".join(alts) + r")(?![^\W_])", re.IGNORECASE)


def snippet(text: str, groups: list[Group]) -> tuple[str, list[tuple[int, int]]]:
    """A short piece of ``text`` around its first matching word, whitespace collapsed, and the (start, end)
    character ranges of the matching words in it. Only ``text`` (read from the session file) is ever quoted."""
    lo, hi = 0, min(len(text), MAX_SCAN_CHARS)
    if text.isascii() and all(t.isascii() for g in groups for t in g.tokens):
        m = _ascii_pattern(tuple(groups)).search(text)
        if m is not None:
            lo, hi = max(0, m.start() - WINDOW_BEFORE), min(len(text), m.end() + WINDOW_AFTER)
    if lo > 0:  # start at a word edge
        edge = _TOKEN.search(text, lo)
        lo = edge.start() if edge else lo
    snip, ranges = _snippet(text[lo:hi], groups)
    if lo > 0 and not snip.startswith("… "):
        ranges = [(a + 2, b + 2) for a, b in ranges]
        snip = "… " + snip
    if hi < len(text.rstrip()) and not snip.endswith(" …"):
        snip += " …"
    return snip, ranges


def _snippet(text: str, groups: list[Group]) -> tuple[str, list[tuple[int, int]]]:
    matches = _matcher(groups)
    found = [(m.start(), m.end(), fold(m.group())) for m in _TOKEN.finditer(text)]
    hits = [i for i, (_, _, tok) in enumerate(found) if matches(tok)]
    if not found:
        return _collapse(text[:SNIPPET_MAX_CHARS])[0], []
    first = hits[0] if hits else 0
    lo = max(0, first - SNIPPET_TOKENS // 3)
    hi = min(len(found), lo + SNIPPET_TOKENS)
    start, end = found[lo][0], found[hi - 1][1]
    if end - start > SNIPPET_MAX_CHARS:
        end = max(found[first][1], start + SNIPPET_MAX_CHARS)
        start = max(start, end - SNIPPET_MAX_CHARS)
    piece, mapping = _collapse(text[start:end])
    ranges: list[tuple[int, int]] = []
    for i in hits:
        s, e, _ = found[i]
        if s >= start and e <= end:
            ranges.append((mapping[s - start], mapping[e - start - 1] + 1))
    prefix = "… " if lo > 0 else ""
    suffix = " …" if end < len(text.rstrip()) else ""
    shift = len(prefix)
    return prefix + piece + suffix, [(a + shift, b + shift) for a, b in ranges]


def _collapse(text: str) -> tuple[str, list[int]]:
    """``text`` with runs of whitespace made one space; mapping[i] is where character i of ``text`` went."""
    out: list[str] = []
    mapping: list[int] = []
    space = False
    for c in text:
        if c.isspace():
            if not space and out:
                out.append(" ")
            space = True
            mapping.append(max(0, len(out) - 1))
        else:
            space = False
            mapping.append(len(out))
            out.append(c)
    return "".join(out).rstrip(), mapping
