"""Tokens: stable fingerprints, numbering in order of appearance, owners.

A token's fingerprint is the first 8 hex digits of its SHA-256 (the Wireshark
plugin shows the same).  keystonemiddleware caches a token in memcached under
``tokens/<sha256 hex of the token>``, so the key maps to the same fingerprint.
Under ``memcache_security_strategy`` keys are HMACs and cannot be linked.

>>> fingerprint("gAAAAABexample")
'f7934039'
>>> reg = TokenRegistry()
>>> reg.see_token("gAAAAABexample").id
'T1'
>>> reg.see_cache_key("tokens/f7934039" + "0" * 56).id
'T1'
>>> reg.see_token("gAAAAABexample", owner="admin@admin").describe()
'T1 admin@admin (f7934039)'
"""

from __future__ import annotations

import hashlib
import re

from .model import Token

#: A quoted SQL literal that looks like a secret: a long run of token/hash/base64 characters.
#: (ids such as 32-hex UUIDs stay: they are what an analyst follows across queries)
_SECRET_LITERAL = re.compile(r"'(\$[A-Za-z0-9+/=_.$-]{16,}|gAAAA[A-Za-z0-9+/=_-]{20,}|[A-Za-z0-9+/=_.$-]{40,})'")


def hide_sql_secrets(sql: str) -> str:
    """Replace quoted literals that look like secrets (tokens, password hashes, keys) by ``'…'``.

    >>> hide_sql_secrets("UPDATE password SET password_hash='$2b$12$abcdefghijklmnopqrstuvABCDEFG' WHERE id=3")
    "UPDATE password SET password_hash='…' WHERE id=3"
    >>> hide_sql_secrets("SELECT * FROM user WHERE name = 'admin' AND id = '5b361b7a22934cc0a97177a0d32584f3'")
    "SELECT * FROM user WHERE name = 'admin' AND id = '5b361b7a22934cc0a97177a0d32584f3'"
    >>> hide_sql_secrets("INSERT INTO credential (blob) VALUES ('" + "QUJD" * 20 + "')")
    "INSERT INTO credential (blob) VALUES ('…')"
    """
    return _SECRET_LITERAL.sub("'…'", sql)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def fingerprint(token: str) -> str:
    """First 8 hex digits of the token's SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def cache_key_token_hash(key: str) -> str | None:
    """The SHA-256 hex in a keystonemiddleware cache key, or None.

    >>> cache_key_token_hash("tokens/" + "ab" * 32) == "ab" * 32
    True
    >>> cache_key_token_hash("tokens/hmac+base64==") is None
    True
    >>> cache_key_token_hash("other") is None
    True
    """
    if not key.startswith("tokens/"):
        return None
    rest = key[len("tokens/"):]
    return rest if _HEX64.fullmatch(rest) else None


def is_token_key(key: str) -> bool:
    return key.startswith("tokens/")


class TokenRegistry:
    """Numbers tokens T1, T2, ... in order of first appearance."""

    def __init__(self) -> None:
        self._by_fp: dict[str, Token] = {}
        self._order: list[str] = []

    def _get(self, fp: str, secret: str | None, owner: str | None) -> Token:
        tok = self._by_fp.get(fp)
        if tok is None:
            tok = Token(f"T{len(self._order) + 1}", fp, owner, secret)
            self._order.append(fp)
        else:
            if (owner and not tok.owner) or (secret and not tok.secret):
                tok = Token(tok.id, fp, tok.owner or owner, tok.secret or secret)
        self._by_fp[fp] = tok
        return tok

    def see_token(self, token: str, owner: str | None = None) -> Token:
        return self._get(fingerprint(token), token, owner)

    def see_cache_key(self, key: str) -> Token | None:
        h = cache_key_token_hash(key)
        if h is None:
            return None
        return self._get(h[:8], None, None)

    def get(self, fp: str) -> Token | None:
        return self._by_fp.get(fp)

    def all(self) -> tuple[Token, ...]:
        return tuple(self._by_fp[fp] for fp in self._order)
