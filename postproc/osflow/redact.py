"""Redaction for exported telemetry: SQL with its literals replaced, URL paths with their ids templated.

OpenTelemetry's database conventions ask for ``db.query.text`` to be collected only once it is
sanitised: every literal replaced by ``?``, so that no value a statement carries (a password
hash, a token, a user's data) leaves with it and statements that differ only in their values
look the same.  :func:`sql_without_literals` does that for the MySQL/MariaDB statements osflow
reads (the drivers OpenStack uses inline their parameters, so every value is a literal).

HTTP span names must have low cardinality: :func:`url_template` turns the ids in a path into
``{id}`` (``GET /v2.1/servers/{id}``).
"""

from __future__ import annotations

import re

#: One token of a MySQL statement, first match wins: a backquoted identifier (kept), a prefixed
#: string literal (``X'0a'``, ``b'01'``, ``N'x'``, ``_utf8mb4'x'``), a word (identifier or keyword,
#: kept, digits in it included), a quoted string (either quote, backslash and doubled-quote escapes,
#: unterminated at the end of a cut statement), a number (hex ``0x1f``, decimal, exponent).
_SQL_TOKEN = re.compile(
    r"""(?P<ident>`(?:[^`]|``)*`?)"""
    r"""|(?P<prefixed>(?:\b[xXbBnN]|\b_[A-Za-z0-9]+)'(?:[^'\\]|\\.|'')*'?)"""
    r"""|(?P<word>[A-Za-z_$][\w$]*)"""
    r"""|(?P<string>'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.|"")*"?)"""
    r"""|(?P<number>0[xX][0-9A-Fa-f]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)""",
    re.S,
)


def sql_without_literals(sql: str) -> str:
    """``sql`` with every string and number literal replaced by ``?``; identifiers, keywords,
    operators, ``NULL``/``TRUE``/``FALSE`` and whitespace stay as they are.

    >>> sql_without_literals("SELECT user.id FROM user WHERE user.name = 'admin' AND user.enabled = 1 LIMIT 2")
    'SELECT user.id FROM user WHERE user.name = ? AND user.enabled = ? LIMIT ?'
    >>> sql_without_literals("UPDATE password SET password_hash='$2b$12$abc\\\\'d''e' WHERE id=3")
    'UPDATE password SET password_hash=? WHERE id=?'
    >>> sql_without_literals('INSERT INTO t (a, b, c) VALUES ("x", -1.5e3, 0x1F)')
    'INSERT INTO t (a, b, c) VALUES (?, -?, ?)'

    Digits inside identifiers, backquoted names and placeholders stay:

    >>> sql_without_literals("SELECT `col 1`, t2.x1 FROM nova_cell0.t2 WHERE a = %s AND b IS NULL")
    'SELECT `col 1`, t2.x1 FROM nova_cell0.t2 WHERE a = %s AND b IS NULL'

    Prefixed literals (hex, bit, national, character set introducers) go whole:

    >>> sql_without_literals("SELECT X'0A', b'01', N'é', _utf8mb4'x' COLLATE utf8mb4_bin")
    'SELECT ?, ?, ?, ? COLLATE utf8mb4_bin'

    A statement cut inside a literal loses the rest of it:

    >>> sql_without_literals("SELECT * FROM token WHERE id = 'gAAAAABl")
    'SELECT * FROM token WHERE id = ?'
    """

    def sub(m: re.Match[str]) -> str:
        kind = m.lastgroup
        if kind in ("ident", "word"):
            return m.group()
        return "?"

    return _SQL_TOKEN.sub(sub, sql)


#: A path segment that is an id: a UUID (with or without dashes), a long hex string, a number,
#: or an OpenStack request id (``req-<uuid>``).
_ID_SEGMENT = re.compile(
    r"(?:req-)?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|\d+"
)


def url_template(uri: str) -> str:
    """The path of ``uri`` with every segment that is an id replaced by ``{id}`` (no query string).

    >>> url_template("/v2.1/servers/e05d2ca6-1f2a-4b6c-8d9e-0a1b2c3d4e5f/action")
    '/v2.1/servers/{id}/action'
    >>> url_template("/allocation_candidates?resources=VCPU:1,MEMORY_MB:64")
    '/allocation_candidates'
    >>> url_template("/v2.1/6b2f1e2c9a8d4f0b8c7d6e5f4a3b2c1d/os-hypervisors/1")
    '/v2.1/{id}/os-hypervisors/{id}'
    >>> url_template("/v3/auth/tokens"), url_template("/v2.1/flavors/m1.nano"), url_template("/")
    ('/v3/auth/tokens', '/v2.1/flavors/m1.nano', '/')
    """
    path = uri.split("?", 1)[0].split("#", 1)[0]
    return "/".join("{id}" if _ID_SEGMENT.fullmatch(seg) else seg for seg in path.split("/")) or "/"


# --------------------------------------------------------------------------- command lines

#: An option or a key whose value is a secret: passwords, tokens, secrets, keys, credentials.
_SECRET_NAME = re.compile(r"pass(?:word|wd|phrase)?|pwd|token|secret|key|credential", re.I)
#: ``scheme://user:password@``: the password of a URL (``rabbit://``, ``mysql+pymysql://``, ``http://``).
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<secret>[^\s@]*)@")
#: ``name=value`` inside a word (``--password=x``, ``OS_PASSWORD=x``, ``Password=x;`` of a connection string).
_KEY_VALUE = re.compile(r"(?P<name>(?<![^\s;&,?\"'({\[])[\w.-]+)=(?P<secret>[^\s;&,'\")]+)")
#: A Fernet token (keystone's) anywhere: fingerprinted as the tokens of the capture are.
_FERNET = re.compile(r"gAAAA[A-Za-z0-9_=-]{20,}")
#: Programs whose ``-pPASSWORD`` is a password (MySQL's and MariaDB's clients and tools).
_MYSQL_TOOLS = re.compile(r"(?:^|/)(?:mysql|mariadb)[\w-]*$")


def _hidden(value: str, name: str = "") -> str:
    """What a secret value is shown as: ``…``, a token ``…(fingerprint)`` as the capture's tokens are."""
    if value.startswith("…"):  # hidden already
        return value
    if value.startswith("gAAAA") or "token" in name.lower():
        from .tokens import fingerprint

        return f"…({fingerprint(value)})"
    return "…"


def _option_name(word: str) -> str | None:
    """The name of ``word`` if it is an option (``-x``, ``--name``), else None."""
    if len(word) > 1 and word[0] == "-" and not word[1:2].isdigit():
        return word.lstrip("-")
    return None


def command_line(text: str, show_secrets: bool = False) -> str:
    """``text`` (a command line from ``ps``, ``meta.json``, a process name) with its secrets hidden:
    the values of password, token, secret and key options (``--os-password S3cret``,
    ``--password=x``), URL credentials (``rabbit://user:pw@host``), ``name=value`` pairs whose name
    says secret (``OS_PASSWORD=x``, a connection string's ``Password=x;``), MySQL's ``-pPASSWORD``,
    and Fernet tokens, which keep their fingerprint.  ``show_secrets`` (``--show-secrets``): as is.

    >>> command_line("openstack --os-password S3cret --os-username admin token issue")
    'openstack --os-password … --os-username admin token issue'
    >>> command_line("openstack --os-token gAAAAABexample --os-url http://x:8778 resource class list")
    'openstack --os-token …(f7934039) --os-url http://x:8778 resource class list'
    >>> command_line("mariadbd --password=pw1 --port 3306 --key-file=/k mysql+pymysql://nova:pw2@db/nova")
    'mariadbd --password=… --port 3306 --key-file=… mysql+pymysql://nova:…@db/nova'
    >>> command_line("nova-conductor transport_url=rabbit://openstack:pw3@ctl:5672/ 'Server=db;Password=pw4;'")
    "nova-conductor transport_url=rabbit://openstack:…@ctl:5672/ 'Server=db;Password=…;'"
    >>> command_line("mysql -uroot -ppw5 nova"), command_line("env OS_PASSWORD=pw6 openstack --password -v")
    ('mysql -uroot -p… nova', 'env OS_PASSWORD=… openstack --password -v')
    >>> command_line("openstack --os-password S3cret", show_secrets=True)
    'openstack --os-password S3cret'
    """
    if show_secrets or not text:
        return text
    words = re.split(r"(\s+)", text)
    mysql = bool(words and _MYSQL_TOOLS.search(words[0]))
    secret_option: str | None = None  # the option whose value is the next word
    for i in range(0, len(words), 2):
        word = words[i]
        if not word:
            continue
        name = _option_name(word)
        if secret_option is not None and name is None:
            words[i] = _hidden(word, secret_option)
            secret_option = None
            continue
        secret_option = None
        if name is not None and "=" not in name and _SECRET_NAME.search(name):
            secret_option = name
            continue
        if mysql and word.startswith("-p") and len(word) > 2 and not word.startswith("--"):
            words[i] = "-p…"
            continue
        words[i] = _in_word(word)
    return "".join(words)


def _in_word(word: str) -> str:
    """One word's URL credentials, secret ``name=value`` values and Fernet tokens hidden."""
    if "://" in word:
        word = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:…@", word)
    if "=" in word:
        word = _KEY_VALUE.sub(
            lambda m: f"{m['name']}={_hidden(m['secret'], m['name'])}"
            if _SECRET_NAME.search(m["name"]) and m["secret"] != "…" else m.group(), word)
    if "gAAAA" in word:
        word = _FERNET.sub(lambda m: _hidden(m.group()), word)
    return word
