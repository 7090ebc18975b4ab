"""Escaping for osflow's renderers: every quoting rule lives here.

Small pure functions, each rule shown by a doctest:

* :func:`one_line` -- any text (or bytes) as one clean line of plain text;
* :func:`mermaid_id` -- a participant id for a Mermaid ``sequenceDiagram``;
* :func:`mermaid_text` -- text for after ``: `` in a message or note line, and
  for ``participant <id> as <text>``;
* :func:`table_cell` -- one cell of the tabulate timeline.

The Mermaid rules were checked by rendering with the real renderer
(mermaid-cli 11.17.0, i.e. mermaid 11, in Chromium; see ``tests/test_quoting.py``).
What breaks a ``sequenceDiagram`` line, or silently changes its text:

==================  ==========================================================
``;``               ends the statement: a parse error, or the text cut short
``#``               starts a comment: the rest of the line silently vanishes
newline, ``\\r``    ends the statement
``<`` ``>``         ``<br>``, ``<BR/>``... become line breaks, and raw markup
                    can make the render fail ("svg element not in render tree")
``%%{...}%%``       a directive, silently removed (a lone ``%`` is fine)
``$$...$$``         KaTeX: drawn as a formula (or a KaTeX error), not as text
``wrap:``           at the start of the text, a wrap flag, silently removed
``¶ß`` ``ﬂ°``       Mermaid's internal entity placeholders (become ``;``, ``&``)
``style...:x#..;``  Mermaid's pre-parse regex ``style.*:\\S*#.*;`` (also
                    ``classDef``) drops the last ``;`` of such a line, which
                    breaks an entity code and cuts the text at its ``#``
``&``               harmless once ``#`` is escaped (``&#59`` followed by an
                    entity code renders as a bare ``&``); escaped anyway
==================  ==========================================================

Harmless in message, note and alias text (rendered literally): ``"``, ``'``,
``{}``, ``[]``, ``()``, ``|``, ``\\``, backquotes, ``-->>``, a single ``%``
(``%%`` not followed by ``{`` too), a single ``$``, ``**``, ``fa:fa-user``,
a colon (in aliases too), keywords such as ``end`` or ``loop`` (alone or
not), ``<script>`` escaped as here (drawn as text), any Unicode.

In participant ids, keywords (in any case) and a leading ``x`` (``B-->>-x1``
lexes as the ``-x`` arrow) break the parse; a leading digit is avoided too (a
number followed by a space lexes as a number).

Escapes use Mermaid's entity codes: ``#59;`` (decimal) or ``#lt;`` (named)
stand for ``&#59;`` and ``&lt;``.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["one_line", "mermaid_id", "mermaid_text", "table_cell"]

#: Dropped by :func:`one_line` besides control characters: the bidirectional
#: embedding, override and isolate controls, which reorder the characters that
#: follow them on screen ("Trojan Source" spoofing), and U+FEFF (byte order
#: mark), which JavaScript's trim() takes for a space but Python does not.
_DROPPED = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")

_SURROGATE = re.compile("[\ud800-\udfff]")
#: ASCII's control characters that are not whitespace (``isspace``), the only ones
#: :func:`one_line` drops from ASCII text.
_ASCII_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f]")
#: Text of these characters only takes one column per character (Latin, general
#: punctuation such as ``…``, arrows): :func:`table_cell` need not measure each one.
_NARROW = re.compile("[ -~\xa0-\xac\xae-\u02ff\u2010-\u2027\u2030-\u205e\u2190-\u21ff]*")


def one_line(text: str | bytes) -> str:
    """`text` as one line of plain text, safe to print anywhere.

    Runs of whitespace of any kind, line breaks included, become one space,
    and the ends are stripped:

    >>> one_line("  GET /v2.1/servers\\r\\n\\tHTTP/1.1  ")
    'GET /v2.1/servers HTTP/1.1'
    >>> one_line("a\\u2028b\\x85c\\x0bd\\x0ce\\xa0f\\u3000g")
    'a b c d e f g'

    Other control characters are dropped, and so are the bidirectional
    controls that reorder text on screen:

    >>> one_line("bell\\x07 nul\\x00 esc\\x1b[31m del\\x7f")
    'bell nul esc[31m del'
    >>> one_line("admin\\u202egnp.exe"), one_line("\\ufeffid")
    ('admingnp.exe', 'id')

    Invalid UTF-8 and lone surrogates (``surrogateescape``) become U+FFFD;
    a surrogate pair is joined:

    >>> one_line(b"caf\\xc3\\xa9 \\xff")
    'café �'
    >>> one_line(b"x\\xffy".decode("utf-8", "surrogateescape"))
    'x�y'
    >>> one_line("\\ud83d\\ude42")
    '🙂'

    Text is composed (NFC), and everything else is kept:

    >>> one_line("cafe\\u0301") == "caf\\xe9"
    True

    >>> one_line("nova-api → placement 日本 🙂")
    'nova-api → placement 日本 🙂'
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if text.isascii():  # the common case, the same result without a look at each character
        return " ".join(_ASCII_CONTROL.sub("", text).split())
    if _SURROGATE.search(text):
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        ch
        for ch in text
        if ch.isspace()
        or (unicodedata.category(ch) != "Cc" and ch not in _DROPPED)
    )
    return " ".join(text.split())


#: Words Mermaid's sequenceDiagram lexer takes as keywords wherever an id is
#: expected, mostly in any case.  Each of these ids was checked to fail (title,
#: accTitle and accDescr only in lower case), except left, right, of, as, wrap
#: and nowrap, which are here to be safe.
MERMAID_KEYWORDS = frozenset(
    w.lower()
    for w in [
        "end", "loop", "alt", "opt", "par", "par_over", "and", "else", "critical", "option", "break", "rect", "box",
        "note", "over", "left", "right", "of", "participant", "actor", "create", "destroy", "as", "activate",
        "deactivate", "autonumber", "off", "title", "accTitle", "accDescr", "link", "links", "properties", "details",
        "sequenceDiagram", "wrap", "nowrap",
    ]
)


def mermaid_id(label: str | bytes) -> str:
    """A Mermaid ``sequenceDiagram`` participant id for `label`.

    Only ``[A-Za-z0-9_]``: each run of other characters becomes one ``_``,
    and ``_`` at either end is dropped:

    >>> mermaid_id("OpenStackClient")
    'OpenStackClient'
    >>> mermaid_id("placement DB")
    'placement_DB'
    >>> mermaid_id("nova-api (wsgi)")
    'nova_api_wsgi'
    >>> mermaid_id("placement_DB")
    'placement_DB'

    Accents are dropped; other non-ASCII letters become ``_`` too:

    >>> mermaid_id("Növa Cönductor")
    'Nova_Conductor'

    An id never starts with a digit, nor with ``x`` (after the ``-`` of
    ``B-->>-x1``, Mermaid reads ``-x`` as an arrow); ``p`` is put in front.
    And it is never empty:

    >>> mermaid_id("127.0.0.1:5000")
    'p127_0_0_1_5000'
    >>> mermaid_id("x;y"), mermaid_id("Xen")
    ('px_y', 'pXen')
    >>> mermaid_id("")
    'p'
    >>> mermaid_id("日本")
    'p'

    A Mermaid keyword, in any case, gets a ``_`` after it; a longer word that
    merely starts with one is fine:

    >>> mermaid_id("end"), mermaid_id("Loop"), mermaid_id("par over")
    ('end_', 'Loop_', 'par_over_')
    >>> mermaid_id("endpoint")
    'endpoint'

    Ids are not made unique here: callers number repeats themselves.

    >>> mermaid_id("a b") == mermaid_id("a/b")
    True
    """
    text = unicodedata.normalize("NFKD", one_line(label))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    ident = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    if not ident or ident[0] in "0123456789xX":
        ident = "p" + ident
    if ident.lower() in MERMAID_KEYWORDS:
        ident += "_"
    return ident


#: Characters given an entity code by :func:`mermaid_text`.
MERMAID_ENTITIES = {
    "#": "#35;",  # starts a comment
    ";": "#59;",  # ends the statement
    "&": "#amp;",  # "&#59" before an entity renders as a bare "&"
    "<": "#lt;",  # <br> breaks the line
    ">": "#gt;",
    "%": "#37;",  # only in runs of two or more: %%{...}%% is a directive
    "$": "#36;",  # only in runs of two or more: $$...$$ is KaTeX
    "\ufb02": "#64258;",  # "ﬂ°": Mermaid's own placeholder for "&"
    "\xb6": "#182;",  # "¶ß": Mermaid's own placeholder for ";"
}

_MERMAID_SPECIAL = re.compile("[#;&<>\ufb02\xb6]|%%+|\\$\\$+")
_MERMAID_WRAP = re.compile(r":?(?:no)?wrap:", re.IGNORECASE)


def mermaid_text(text: str | bytes) -> str:
    """`text` for a Mermaid ``sequenceDiagram`` message, note or alias.

    The result goes after ``: `` (with the space) in ``A->>B: <text>`` and
    ``Note over A: <text>``, or after ``as`` in ``participant A as <text>``.
    It is one line (see :func:`one_line`) and may be empty:

    >>> mermaid_text("POST /v3/auth/tokens\\n  HTTP/1.1")
    'POST /v3/auth/tokens HTTP/1.1'
    >>> mermaid_text(" \\t ")
    ''

    Text that Mermaid takes as it is stays as it is -- quotes, braces, a
    colon, keywords, a lone ``%``:

    >>> print(mermaid_text('200 OK {"token": [1, 2]} \\'x\\' (a|b)'))
    200 OK {"token": [1, 2]} 'x' (a|b)
    >>> mermaid_text("end"), mermaid_text("loop"), mermaid_text("100% a%2Fb")
    ('end', 'loop', '100% a%2Fb')

    ``;`` (ends the statement) and ``#`` (starts a comment) become entity
    codes, and so do ``&``, ``<`` and ``>``:

    >>> mermaid_text("SELECT a; DROP TABLE x -- #")
    'SELECT a#59; DROP TABLE x -- #35;'
    >>> mermaid_text("<br> & <script>")
    '#lt;br#gt; #amp; #lt;script#gt;'

    Text that already looks like an entity code is escaped, not decoded:

    >>> mermaid_text("#59; &lt;")
    '#35;59#59; #amp;lt#59;'

    ``%`` and ``$`` are escaped in runs of two or more, which defuses
    ``%%{init}%%`` directives and ``$$...$$`` formulas:

    >>> mermaid_text("a%%{init: {}}%%b")
    'a#37;#37;{init#58; {}}#37;#37;b'
    >>> mermaid_text("$$x^2$$ costs $5")
    '#36;#36;x^2#36;#36; costs $5'

    Mermaid's internal placeholders ``ﬂ°`` and ``¶ß`` are broken up (``ß``
    alone is left alone):

    >>> mermaid_text("\\ufb02\\xb0lt\\xb6\\xdf Straße")
    '#64258;°lt#182;ß Straße'

    A colon becomes ``#58;`` when the text holds any other entity code
    (Mermaid's pre-parse regex ``style.*:\\S*#.*;`` would otherwise eat the
    ``;`` of an entity on a line that mentions ``style``), or when the text
    starts with a ``wrap:`` or ``nowrap:`` flag:

    >>> mermaid_text("style a:b;c")
    'style a#58;b#59;c'
    >>> mermaid_text("http://10.0.0.5:8774/v2.1")
    'http://10.0.0.5:8774/v2.1'
    >>> mermaid_text("wrap: off"), mermaid_text(":nowrap:x")
    ('wrap#58; off', '#58;nowrap#58;x')
    """
    text = one_line(text)

    def entity(match: re.Match[str]) -> str:
        s = match.group()
        return "".join(MERMAID_ENTITIES[ch] for ch in s)

    out = _MERMAID_SPECIAL.sub(entity, text)
    if "#" in out or _MERMAID_WRAP.match(out):
        out = out.replace(":", "#58;")
    return out


def mermaid_label(text: str | bytes) -> str:
    """`text` for a quoted Mermaid ``flowchart`` label: a node's ``n1["<text>"]``, an edge's
    ``-->|"<text>"|``, a subgraph's ``subgraph h1["<text>"]``.

    As :func:`mermaid_text`, and ``"`` (ends the label) and the backtick (a leading one makes a
    Markdown string) become entity codes too:

    >>> print(mermaid_label('GET /x?a="b:1" `c`'))
    GET /x?a=#quot;b#58;1#quot; #96;c#96;
    >>> mermaid_label("3× · p50 1.2 ms"), mermaid_label("end")
    ('3× · p50 1.2 ms', 'end')
    """
    out = mermaid_text(text)
    if '"' in out or "`" in out:
        out = out.replace(":", "#58;").replace('"', "#quot;").replace("`", "#96;")
    return out


def _cell_width(ch: str) -> int:
    """Columns `ch` takes in a terminal: 0, 1 or 2.

    >>> [_cell_width(c) for c in "a日\\u0301🙂"]
    [1, 2, 0, 2]
    """
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def table_cell(text: str | bytes, width: int | None = None) -> str:
    """`text` for one cell of the tabulate timeline.

    One line (see :func:`one_line`): newlines and tabs become spaces, control
    characters go:

    >>> table_cell("HTTP/1.1 200 OK\\r\\nContent-Type:\\tjson\\x00")
    'HTTP/1.1 200 OK Content-Type: json'

    With a `width`, a longer text is cut to fit in that many columns, ``…``
    included, with no space before the ``…``:

    >>> table_cell("GET /v2.1/servers/detail", 12)
    'GET /v2.1/s…'
    >>> table_cell("tokens/abc def", 11)
    'tokens/abc…'
    >>> table_cell("short", 12), table_cell("exact", 5)
    ('short', 'exact')
    >>> table_cell("toolong", 1), table_cell("toolong", 0)
    ('…', '')

    Wide (East Asian) characters count as two columns, combining marks as
    none:

    >>> table_cell("日本語のテキスト", 7)
    '日本語…'
    >>> table_cell("cafe\\u0301 cafe\\u0301", 5)  # composed first
    'café…'
    >>> table_cell("q\\u0307" * 4, 3) == "q\\u0307q\\u0307…"
    True

    Nothing is escaped for a table format (``|`` stays as it is):

    >>> table_cell("a|b")
    'a|b'
    """
    text = one_line(text)
    if width is None:
        return text
    if width < 0:
        raise ValueError(f"width must be >= 0, not {width}")
    if _NARROW.fullmatch(text):  # one column per character (one_line left no control character)
        if len(text) <= width:
            return text
        return text[: width - 1].rstrip() + "…" if width else ""
    if sum(_cell_width(ch) for ch in text) <= width:
        return text
    if width == 0:
        return ""
    kept: list[str] = []
    used = 0
    for ch in text:
        w = _cell_width(ch)
        if used + w > width - 1:
            break
        kept.append(ch)
        used += w
    return "".join(kept).rstrip() + "…"


def markdown_cell(text: str) -> str:
    r"""Text for a Markdown table cell: one line, ``|`` escaped.

    >>> markdown_cell("SELECT a || b FROM t")
    'SELECT a \\|\\| b FROM t'
    """
    return one_line(text).replace("|", "\\|")


# --------------------------------------------------------------------------- JSON

from json.encoder import encode_basestring as _json_utf8  # noqa: E402  (the C encoders, when built)
from json.encoder import encode_basestring_ascii as _json_ascii  # noqa: E402


def json_value(value: object, ascii_only: bool = False) -> str:
    """A JSON scalar or list of scalars, exactly as ``json.dumps(value, ensure_ascii=ascii_only)``
    writes it, without building an encoder for each value (JSON Lines writes a dozen per pair).

    >>> [json_value(v) for v in ('é "q"', None, 3, True, [1, 2], ["T1"])]
    ['"é \\\\"q\\\\""', 'null', '3', 'true', '[1, 2]', '["T1"]']
    >>> json_value("é", ascii_only=True)
    '"\\\\u00e9"'
    >>> import json; all(json_value(v) == json.dumps(v, ensure_ascii=False) for v in ("\\x00\\n\\u2028", -0, [], False))
    True
    """
    if value is None:
        return "null"
    if isinstance(value, str):
        return _json_ascii(value) if ascii_only else _json_utf8(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json_value(v, ascii_only) for v in value) + "]"
    import json

    return json.dumps(value, ensure_ascii=ascii_only)


# --------------------------------------------------------------------------- HTML (the report)

_HTML_SPECIAL = re.compile("[&<>\"']")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
_HTML_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def html_text(text: str | bytes | None, lines: bool = False) -> str:
    """`text` for HTML element content or a quoted attribute value (``"`` or ``'``).

    One line (see :func:`one_line`), with ``& < > " '`` as character references:

    >>> html_text('<script>alert("x")</script> & \\'y\\'\\n  z')
    '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39; z'
    >>> html_text(None), html_text(b"caf\\xc3\\xa9 \\xff")
    ('', 'café �')

    With ``lines=True`` (a ``<pre>`` block) line breaks and indentation stay; other control
    characters, bidirectional controls and lone surrogates go all the same:

    >>> html_text("a\\n    b <c>\\r\\n\\x00\\u202ed", lines=True)
    'a\\n    b &lt;c&gt;\\nd'
    """
    if text is None:
        return ""
    if lines:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        text = _HTML_CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    "))
    else:
        text = one_line(text)
    return _HTML_SPECIAL.sub(lambda m: _HTML_ENTITIES[m.group()], text)


_SCRIPT_JSON_SPECIAL = re.compile("[<>&\u2028\u2029\ud800-\udfff]")


def script_json(value: object) -> str:
    """`value` as JSON for a ``<script type="application/json">`` element, read back with
    ``JSON.parse(element.textContent)``.

    ``<``, ``>`` and ``&`` are written as ``\\u`` escapes (they only occur inside JSON
    strings), so no ``</script>`` nor ``<!--`` can end or change the element; so are
    U+2028/U+2029 and lone surrogates (which UTF-8 cannot carry):

    >>> print(script_json({"request": "</script><!-- & é", "n": [1, None]}))
    {"request":"\\u003c/script\\u003e\\u003c!-- \\u0026 é","n":[1,null]}
    >>> print(script_json("a\\u2028b\\udc80"))
    "a\\u2028b\\udc80"
    >>> import json; json.loads(script_json("</SCRIPT>\\u2029")) == "</SCRIPT>\\u2029"
    True
    """
    import json

    out = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _SCRIPT_JSON_SPECIAL.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


_SCRIPT_END = re.compile("</(script)", re.IGNORECASE)
_SCRIPT_COMMENT = re.compile("<!--((?!-->).)*<script[\\s/>]", re.IGNORECASE | re.DOTALL)


def inline_script(source: str) -> str:
    """JavaScript `source` (a library such as mermaid's browser build) for inside ``<script>…</script>``.

    The one sequence that ends the element early, ``</script``, becomes ``<\\/script`` (the same
    in a JavaScript string, template or regular expression, and in a comment):

    >>> inline_script('x = "</script>"; y = /<\\\\/sCrIpT>/')
    'x = "<\\\\/script>"; y = /<\\\\/sCrIpT>/'

    ``<!--`` followed by ``<script`` changes how HTML reads all that follows, and no rewrite is
    safe in every JavaScript context: such a source is refused:

    >>> inline_script('s = "<!-- <script>"')
    Traceback (most recent call last):
    ...
    ValueError: the script holds '<!--' then '<script', which HTML cannot carry inline
    >>> inline_script('a = "<!-->"; b = "<script"') == 'a = "<!-->"; b = "<script"'
    True
    """
    if "<!--" in source and _SCRIPT_COMMENT.search(source):
        raise ValueError("the script holds '<!--' then '<script', which HTML cannot carry inline")
    return _SCRIPT_END.sub(lambda m: "<\\/" + m.group(1), source)
