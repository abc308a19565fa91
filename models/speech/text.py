"""Text for the ear: what a reply sounds like once markdown is gone, cut into sentences.

* :func:`speakable` turns a markdown reply into plain prose a synthesizer can read. The
  reply is parsed by markdown-it-py (CommonMark with tables and strikethrough) and its tokens
  are read out: fenced code blocks become "(code omitted)", indented ones are left out,
  inline code keeps its words, links and pictures their label (a link without one, and a
  bare URL, become their host name: "a link to example.com"), emphasis/heading/table/list
  markup goes, table rows are read cell by cell, and headings and list items end with a
  full stop so each is spoken as its own sentence.
* :func:`split_sentences` cuts prose at sentence ends without cutting at abbreviations
  ("e.g.", "Dr."), decimals ("3.14"), initials ("J. R. R."), list numbers ("1.") or
  ellipses inside a sentence.
* :class:`SentenceStream` does the same on a stream of chunks (tokens from the generator):
  ``feed(chunk)`` returns the sentences completed so far, ``flush()`` the remainder. A
  sentence is only released once the next non-space character shows it really ended, and
  nothing inside an open code fence (or a table) is released until it closes, so streamed
  speech says the same as speaking the whole reply at once.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["speakable", "split_sentences", "SentenceStream", "ABBREVIATIONS"]

ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx dept est fig no nos vol
    vols ed eds inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec mon tue
    wed thu fri sat sun gen col lt sgt capt rev hon u.s u.k a.m p.m ph.d op eq
    """.split()
)
"""Words that end in a full stop without ending the sentence (lower case, inner dots kept)."""

# CommonMark plus the two GitHub extensions replies use: tables and ~~strikethrough~~.
_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# The stream holds an open code block back until it closes, and a table until a line that is
# not one of its rows.
_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE_ROW = re.compile(r"^\s*\|")
_TABLE_AFTER_TEXT = re.compile(r"^(?!\s*\|)(.*\S.*)\n(?=\s*\|)", re.MULTILINE)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\]]+", re.IGNORECASE)
_HTML = re.compile(r"</?[a-zA-Z][^>]*>")
_SYMBOLS = {"&": " and ", "%": " percent", "→": " to ", "->": " to ", "=>": " gives ", "+/-": " plus or minus "}


def _host(url: str) -> str:
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.IGNORECASE).split("/")[0]
    return host.rstrip(".,;:!?")


def _say_url(m: re.Match) -> str:
    url = m.group(0)
    tail = url[len(url.rstrip(".,;:!?")):]
    return f"a link to {_host(url)}{tail}"


def _prose(text: str) -> str:
    """Plain text -> what is said: bare URLs by host, symbols in words, stray markup gone."""
    text = _URL.sub(_say_url, text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"[*_#`|\\^<>{}\[\]~]", " ", text)  # markup characters never worth pronouncing
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if re.search(r"\w", line))  # "===" says nothing


def _inline(token: Token) -> str:
    """An inline token's words: emphasis and HTML tags dropped, code kept as its text, a link
    or picture as its label (a link without one as its host), a line break as a line break."""
    parts: list[str] = []
    link_at, href = 0, ""
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "link_open":
            link_at, href = len(parts), str(child.attrGet("href") or "")
        elif child.type == "link_close" and not "".join(parts[link_at:]).strip():
            parts.append(f"a link to {_host(href)}")
        elif child.type == "image":
            parts.append(child.content or f"a link to {_host(str(child.attrGet('src') or ''))}")
    return _prose("".join(parts))


def _speak(markdown: str, *, finished: bool = True) -> str:
    """Markdown -> one line per paragraph, heading, list item or table row. With ``finished``,
    a heading or list item without closing punctuation gets a full stop (so it is said as
    a sentence of its own); without, the text is a preview of a line still being written."""
    text = markdown.replace("\r\n", "\n").replace("\r", "\n")
    text = _TABLE_AFTER_TEXT.sub(r"\1\n\n", text)  # a table right under a line of text starts its own block
    out: list[str] = []
    row: list[str] | None = None
    in_item = in_heading = 0
    for token in _MARKDOWN.parse(text):
        kind = token.type
        if kind == "fence":
            out.append("(code omitted).")
        elif kind == "html_block":
            out.append(_prose(_HTML.sub("", token.content)))
        elif kind in ("list_item_open", "list_item_close"):
            in_item += 1 if kind.endswith("open") else -1
        elif kind in ("heading_open", "heading_close"):
            in_heading += 1 if kind.endswith("open") else -1
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            out.append(", ".join(cell for cell in row if cell))
            row = None
        elif kind == "inline":
            said = _inline(token)
            if row is not None:
                row.append(said.replace("\n", " "))
            elif said:
                if finished and (in_item or in_heading) and said[-1] not in ".!?:;":
                    said += "."
                out.append(said)
        # Indented code ("code_block") is left out without a word: a stream may see an
        # indented continuation line of a list item on its own, which parses as code.
    return "\n".join(line for line in out if line)


def speakable(markdown: str) -> str:
    """Markdown -> plain prose for a synthesizer (one line per paragraph or list item)."""
    return _speak(markdown)


# ----------------------------------------------------------------------------- sentences

_END = re.compile(r"[.!?…]+[\"'”’)\]]*")
_CLAUSE = re.compile(r"\w[,;:](?=\s+\S)")  # a clause boundary with text after it


def _is_boundary(text: str, match: re.Match) -> bool | None:
    """Does the terminator ``match`` end a sentence? None: cannot tell yet (text ends here)."""
    start, end = match.span()
    rest = text[end:]
    nxt = rest.lstrip()
    if rest[:1] == "\n":
        return True  # a line ends here (speakable puts each paragraph and item on a line)
    if not nxt:
        return None
    if rest[:1] not in (" ", "\n", "\t") and not rest[:1] in "\"'”’)":
        return False  # "3.14", "e.g.x", "file.txt": no space after the dot
    punct = match.group(0)
    if punct.startswith(".") and punct.rstrip("\"'”’)]") == ".":
        before = text[:start]
        word = re.search(r"([\w.']+)$", before)
        token = word.group(1).lower() if word else ""
        if token.rstrip(".") in ABBREVIATIONS or token in ABBREVIATIONS:
            return False
        if re.fullmatch(r"[a-z]", token) and not (word.group(1) == "I" and before[:-1].strip()):
            return False  # an initial ("J. Smith"), but "... so do I." ends a sentence
        if re.fullmatch(r"\d{1,3}", token):
            # "1. First" at a line start is a list number, not the end of a sentence.
            line_start = before[: -len(token)].rstrip(" \t")
            if line_start == "" or line_start.endswith("\n"):
                return False
        if nxt[:1].islower():
            return False  # "approx. three", "a.k.a. something": no capital after
    elif (punct.startswith("..") or punct.startswith("…")) and nxt[:1].islower():
        return False  # "well... maybe": an ellipsis inside a sentence
    return True


def _split(text: str, final: bool) -> tuple[list[str], str]:
    """Complete sentences in ``text`` and the unfinished remainder (all of it when final)."""
    sentences: list[str] = []
    begin = 0
    # Line breaks end sentences too (speakable puts list items and paragraphs on lines).
    for m in re.finditer(r"\n|" + _END.pattern, text):
        if m.group(0) == "\n":
            piece = text[begin:m.start()].strip()
            if piece:
                sentences.append(piece)
            begin = m.end()
            continue
        verdict = _is_boundary(text, m)
        if verdict is None:
            break
        if verdict:
            piece = text[begin:m.end()].strip()
            if piece:
                sentences.append(piece)
            begin = m.end()
    rest = text[begin:]
    if final:
        if rest.strip():
            sentences.append(rest.strip())
        rest = ""
    return sentences, rest


def split_sentences(text: str) -> list[str]:
    """Cut plain text into sentences (apply :func:`speakable` first to markdown)."""
    return _split(text, final=True)[0]


class SentenceStream:
    """Incremental sentence splitter for streamed markdown.

    >>> s = SentenceStream()
    >>> s.feed("Hello there. How ar")
    ['Hello there.']
    >>> s.feed("e you?")
    []
    >>> s.flush()
    ['How are you?']

    With ``markdown=True`` (default) the text goes through :func:`speakable`; a code fence is
    held back until it closes and comes out as "(code omitted).". Sentences longer than
    ``max_chars`` are cut at a comma or space so that audio can start early. With
    ``first_clause=True`` (default) the reply's first piece is released at the first clause
    boundary (", " "; " ": " after at least three words) when that comes before the end of
    the first sentence: "Sure, here is one: ..." starts speaking after "Sure, here is one:",
    which is what the listener waits for most.
    """

    def __init__(self, *, markdown: bool = True, max_chars: int = 400, first_clause: bool = True) -> None:
        self.markdown = markdown
        self.max_chars = max_chars
        self.first_clause = first_clause
        self._started = False  # has a piece been released yet?
        self._raw = ""  # markdown not yet converted: the unfinished line (or an open code block)
        self._ready = ""  # speakable text of finished lines, not yet released
        self._line_said = ""  # speakable prefix of the unfinished line already released

    def feed(self, chunk: str) -> list[str]:
        """Add streamed text; return the sentences now known to be complete."""
        if not self.markdown:
            self._ready += chunk
            sentences, self._ready = self._first(*_split(self._ready, final=False))
            return self._cap(sentences)
        self._raw += chunk
        self._take_complete_lines()
        preview = self._preview()
        pending = self._ready + preview
        sentences, rest = self._first(*_split(pending, final=False))
        consumed = len(pending) - len(rest)
        if consumed <= len(self._ready):
            self._ready = self._ready[consumed:]
        else:
            self._line_said += preview[: consumed - len(self._ready)]
            self._ready = ""
        return self._cap(sentences)

    def _first(self, sentences: list[str], rest: str) -> tuple[list[str], str]:
        """Before anything was released: cut the first clause off ``rest`` when it is long enough."""
        if not sentences and self.first_clause and not self._started:
            for m in _CLAUSE.finditer(rest):
                head = rest[:m.end()]
                if "\n" in head:
                    break
                if len(head.split()) >= 3:
                    sentences, rest = [head.strip()], rest[m.end():]
                    break
        if sentences:
            self._started = True
        return sentences, rest

    def _take_complete_lines(self) -> None:
        cut = self._raw.rfind("\n")
        if cut < 0:
            return
        lines = self._raw[:cut].split("\n")
        complete = len(lines)
        fences = [i for i, ln in enumerate(lines) if _FENCE.match(ln)]
        if len(fences) % 2:  # a code block is still open: keep it (and what follows) raw
            lines = lines[: fences[-1]]
        else:  # and a table that may go on: markdown reads its rows together
            while lines and _TABLE_ROW.match(lines[-1]):
                lines.pop()
        if len(lines) < complete:
            if not lines:
                return
            cut = len("\n".join(lines))
        text = speakable("\n".join(lines))
        said = self._line_said.strip()
        if said:  # the start of the first line was already spoken
            at = text.find(said)
            if 0 <= at <= 2:
                text = text[at + len(said):]
        self._ready += text + "\n"
        self._raw = self._raw[cut + 1:]
        self._line_said = ""

    def _preview(self) -> str:
        """The not yet released prose of the unfinished line, when it is plain prose."""
        raw = self._raw
        if not raw or "\n" in raw or _FENCE.match(raw) or raw.count("`") % 2:
            return ""
        if re.match(r"\s*(?:[|#>]|\d+[.)]\s)", raw) or re.search(r"\[[^\]]*$|\]\([^)]*$|(?:https?://|www\.)\S*$", raw):
            return ""  # a table row, heading, list number, or a link still being written
        text = _speak(raw, finished=False) + (" " if raw[-1:].isspace() else "")
        said = self._line_said
        if text.startswith(said):
            return text[len(said):]
        at = text.find(said.strip())
        return text[at + len(said.strip()):] if said.strip() and at >= 0 else ""

    def _cap(self, sentences: list[str]) -> list[str]:
        out: list[str] = []
        for s in sentences:
            while len(s) > self.max_chars:
                cut = s.rfind(", ", 0, self.max_chars)
                cut = cut + 1 if cut > 0 else s.rfind(" ", 0, self.max_chars)
                if cut <= 0:
                    cut = self.max_chars
                out.append(s[:cut].strip())
                s = s[cut:].strip()
            if s:
                out.append(s)
        return out

    def flush(self) -> list[str]:
        """The end of the stream: every remaining piece of text, as sentences."""
        text = self._ready
        if self.markdown and self._raw:
            rest = speakable(self._raw)
            said = self._line_said.strip()
            if said and rest.find(said) in (0, 1, 2):
                rest = rest[rest.find(said) + len(said):]
            text += rest
        elif not self.markdown:
            text = self._ready
        self._raw = self._ready = self._line_said = ""
        self._started = False
        return self._cap(split_sentences(text))
