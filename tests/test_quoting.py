"""osflow.quoting: rendered with the real Mermaid renderer, and property tests.

The ``mermaid`` tests need mermaid-cli and Chromium (``sh
tests/tools/install-mermaid.sh``) and skip without them.  All the nasty text
goes into ONE diagram (a render costs 2-5 s), and the test checks not only that
it renders but that every participant, message and note reads exactly as the
text given -- Mermaid drops the rest of a line after a raw ``#`` without any
error, so rendering alone proves little.
"""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osflow.quoting import (
    MERMAID_ENTITIES,
    MERMAID_KEYWORDS,
    mermaid_id,
    mermaid_text,
    one_line,
    table_cell,
)

# ---------------------------------------------------------------- test data

NASTY = [
    ";",
    "a;b",
    "#",
    "a#b",
    "#59;",
    "&#59;",
    "&lt; &amp &copy",
    "end",
    "loop",
    "alt x",
    "else",
    "opt",
    "par",
    "and",
    "Note over A: x",
    "participant X as Y",
    "%%",
    "%% comment",
    "a %%{init: {'theme': 'dark'}}%% b",
    '"double" \'single\' `back`',
    "<script>alert(1)</script>",
    "<br> <BR/> <br \t/>",
    "<b>bold</b> <a href='javascript:alert(1)'>x</a>",
    "{}",
    '{"auth": {"identity": {"methods": ["password"]}}}',
    ":",
    "a:b:c",
    ":leading colon",
    "wrap: flagged",
    ":nowrap:x",
    "style a:b;c",
    "classDef x:y#z;w",
    "$$x^2$$",
    "costs $5",
    "100% 50%% %2F",
    "\ufb02\xb0lt\xb6\xdf Straße ¶",
    "-->> ->> -x --) +b -a",
    "\\n \\ back\\slash",
    "tabs\tand\nnew\r\nlines\u2028and\x85more",
    "ctrl\x00\x07\x1b[31m\x7fchars",
    "bidi \u202eevil\u202c",
    "\ufeffbom",
    "lone \ud800 surrogate \udcff",
    "unicode é e\u0301 日本語 🙂 \u200b zwsp",
    "tokens/abc…",
    "GET /v3/auth/tokens → 201 Created",
    "SELECT a; DROP TABLE x -- #",
    "SELECT * FROM resource_providers WHERE uuid = '1;2' /* #x */",
    "http://127.0.0.1:5000/v3?a=1&b=2#frag",
    "x" * 2000,
    "a;" * 400,
    "# " * 300,
    "Syntax  error",
    "",
    "   ",
]

LABELS = [
    "OpenStackClient",
    "placement DB",
    "127.0.0.1:5000",
    "keystone (wsgi)",
    "end",
    "loop",
    "participant",
    "Note",
    "par_over",
    "x;y",
    "xenon",
    "a#b",
    "日本",
    "Növa",
    "<b>nova</b>",
    "wrap: api",
    "100%%",
    "style a:b;c",
    "$$x$$",
    "-->>",
    "l" * 300,
    "",
]

#: Characters and words that have a meaning to Mermaid, for random text.
_PIECES = list(";#%$<>&\"'{}[]()|:,\\`=-+*!?@^~/_. \t\n\r\x00\x1b\x85\u2028\u202e\ufeff")
_PIECES += ["end", "loop", "wrap:", "nowrap:", "style ", "classDef ", "<br>", "%%{", "$$"]
_PIECES += ["#59;", "#lt;", "&#", "&amp;", "\ufb02\xb0", "\xb6\xdf", "ß", "日本", "🙂", "e\u0301"]
_PIECES += ["\ud800", "\udcff", "a", "B", "7", "x", "tokens/"]


def random_texts(n: int, seed: int = 20240611) -> list[str]:
    """`n` reproducible strings made of bits Mermaid may trip on."""
    rnd = random.Random(seed)
    return ["".join(rnd.choice(_PIECES) for _ in range(rnd.randint(1, 30))) for _ in range(n)]


# ------------------------------------------------------------ the diagram

def build_diagram(labels: list[str], texts: list[str]) -> tuple[str, dict[str, list[str]]]:
    """A sequenceDiagram using every label and text; and the text expected on screen."""
    lines = ["sequenceDiagram", "    autonumber"]
    expected: dict[str, list[str]] = {"actors": [], "messages": [], "notes": []}
    ids: list[str] = []
    for label in labels:
        base = pid = mermaid_id(label)
        n = 2
        while pid in ids:
            pid, n = f"{base}_{n}", n + 1
        ids.append(pid)
        if pid == label:
            lines.append(f"    participant {pid}")
        else:
            lines.append(f"    participant {pid} as {mermaid_text(label)}")
        expected["actors"].append(one_line(label))

    for k, text in enumerate(texts):
        a, b = ids[k % len(ids)], ids[(k * 7 + 3) % len(ids)]
        if a == b:
            b = ids[(ids.index(a) + 1) % len(ids)]
        quoted = mermaid_text(text)
        kind = k % 4
        if kind == 0:
            lines.append(f"    {a}->>{b}: {quoted}")
        elif kind == 1:
            lines.append(f"    {a}->>+{b}: {quoted}")
            lines.append(f"    {b}-->>-{a}: {quoted}")
            expected["messages"].append(one_line(text))
        elif kind == 2:
            lines.append(f"    Note over {a}: {quoted}")
        else:
            lines.append(f"    Note over {a},{b}: {quoted}")
        expected["notes" if kind >= 2 else "messages"].append(one_line(text))

    # A control line, NOT escaped: Mermaid silently drops everything from
    # the "#" on.  The test checks that it did, so that the content check
    # below is known to see what Mermaid drew.
    lines.append(f"    {ids[0]}->>{ids[1]}: control#dropped")
    return "\n".join(lines) + "\n", expected


def drawn_text(svg: Path) -> dict[str, Counter[str]]:
    """The text of the participants, messages and notes drawn in `svg`."""
    root = ET.parse(svg).getroot()
    drawn: dict[str, Counter[str]] = {"actors": Counter(), "messages": Counter(), "notes": Counter()}
    for el in root.iter("{http://www.w3.org/2000/svg}text"):
        classes = el.get("class", "").split()
        text = "".join(el.itertext())
        if "messageText" in classes:
            drawn["messages"][text] += 1
        elif "noteText" in classes:
            drawn["notes"][text] += 1
        elif "actor" in classes:
            drawn["actors"][text] += 1
    return drawn


@pytest.mark.mermaid
def test_nasty_text_renders_exactly(mermaid_render):
    texts = NASTY + random_texts(60)
    mmd, expected = build_diagram(LABELS, texts)
    assert len(mmd) < 50_000, "over Mermaid's maxTextSize: the test would test nothing"
    drawn = drawn_text(mermaid_render(mmd))

    assert drawn["messages"]["control"] == 1, drawn["messages"]  # the unescaped control line
    missing = {
        kind: [t for t in want if t and t not in drawn[kind]]  # Mermaid draws "" as U+200B
        for kind, want in expected.items()
    }
    assert missing == {"actors": [], "messages": [], "notes": []}, (
        f"{sum(map(len, missing.values()))} texts not drawn as given:\n{missing}"
    )
    # Every participant appears twice (top and bottom), so none was lost or merged.
    for label in LABELS:
        if one_line(label):
            assert drawn["actors"][one_line(label)] >= 2, label


@pytest.mark.mermaid
def test_renderer_catches_a_broken_diagram(mermaid_render):
    """An unescaped ``;`` in an alias is a parse error, and render() says so."""
    broken = "sequenceDiagram\n    participant A as x;y\n    A->>B: hi\n"
    with pytest.raises(AssertionError, match=r"Parse error"):
        mermaid_render(broken)
    # ...and the same text through quoting renders.
    ok = f"sequenceDiagram\n    participant A as {mermaid_text('x;y')}\n    A->>B: hi\n"
    assert mermaid_render(ok, name="fixed").stat().st_size > 0


# ------------------------------------------------------- property tests

#: Any Unicode text, lone surrogates and control characters included.
any_text = st.text(st.characters(exclude_categories=()))
#: Text built from the pieces that mean something to Mermaid.
mermaid_ish = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)
texts = st.one_of(any_text, mermaid_ish, st.binary())

_ENTITY = re.compile(r"#\w+;")  # what Mermaid's encodeEntities takes for an entity code
_NAMED = {"lt": "<", "gt": ">", "amp": "&"}


def decode(quoted: str) -> str:
    """Undo Mermaid's entity codes, as Mermaid and the browser do."""
    return re.sub(
        r"#(\d+|[a-z]+);",
        lambda m: chr(int(m[1])) if m[1].isdigit() else _NAMED[m[1]],
        quoted,
    )


def assert_one_line(s: str) -> None:
    assert s == " ".join(s.split()), repr(s)  # no line break, tab, run of spaces, or edge space
    assert not any(c.isspace() and c != " " for c in s), repr(s)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in s), repr(s)
    s.encode("utf-8")  # valid UTF-8
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]", s), repr(s)


@given(texts)
def test_one_line_is_one_clean_line(text):
    assert_one_line(one_line(text))


@given(texts)
def test_mermaid_text_has_no_raw_dangerous_characters(text):
    out = mermaid_text(text)
    assert_one_line(out)
    # Every "#" starts one of our entity codes, and Mermaid splits them the same way.
    ours = set(MERMAID_ENTITIES.values()) | {"#58;"}
    assert set(_ENTITY.findall(out)) <= ours, out
    rest = _ENTITY.sub("", out)
    for bad in ("#", ";", "<", ">", "&", "\ufb02", "\xb6", "\n", "\r"):
        assert bad not in rest, (bad, out)
    for bad in ("%%", "$$"):
        assert bad not in out, (bad, out)
    assert not re.match(r":?(no)?wrap:", out, re.IGNORECASE), out
    # Mermaid's pre-parse hack must never eat one of our ";".
    for line in (f"style->>classDef: {out}", f"Note over style: {out}", f"participant style as {out}"):
        assert not re.search(r"style.*:\S*#.*;", line), line
        assert not re.search(r"classDef.*:\S*#.*;", line), line


@given(texts)
def test_mermaid_text_loses_nothing(text):
    assert decode(mermaid_text(text)) == one_line(text)


def test_mermaid_text_leaves_plain_text_alone():
    plain = "GET /v2.1/servers/detail?all_tenants=1 HTTP/1.1 = 200 OK (12.5 ms) 'x' \"y\" {z}"
    assert mermaid_text(plain) == plain


@given(texts)
def test_mermaid_id_is_a_safe_identifier(label):
    pid = mermaid_id(label)
    assert re.fullmatch(r"[A-WYZa-wyz_][A-Za-z0-9_]*", pid), pid  # not x: "-x" is an arrow
    assert pid.lower() not in MERMAID_KEYWORDS, pid
    assert mermaid_id(label) == pid


@pytest.mark.parametrize("keyword", sorted(MERMAID_KEYWORDS))
def test_mermaid_id_avoids_keywords(keyword):
    for word in (keyword, keyword.upper(), keyword.title()):
        assert mermaid_id(word).lower() != keyword


def _columns(s: str) -> int:
    from osflow.quoting import _cell_width

    return sum(_cell_width(c) for c in s)


@settings(max_examples=200)
@given(texts, st.one_of(st.none(), st.integers(min_value=0, max_value=80)))
def test_table_cell_is_one_line_and_fits(text, width):
    cell = table_cell(text, width)
    full = one_line(text)
    if cell:
        assert_one_line(cell)
    if width is None or _columns(full) <= width:
        assert cell == full
    else:
        assert _columns(cell) <= width
        if width:
            assert cell.endswith("…")
            assert full.startswith(cell[:-1])


def test_table_cell_rejects_negative_width():
    with pytest.raises(ValueError):
        table_cell("x", -1)
