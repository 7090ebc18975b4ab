"""What a pair says, in words: its request and response texts, with secrets hidden.

Part of the flow stage (:mod:`osflow.flow` calls it for every exchange).  The words
themselves are each protocol's (``text`` of its module in :mod:`osflow.protocols`); this
module gives them the flow's token registry and the choice to show secrets.  Each
exchange gets a :class:`PairText`: the plain request and response (JSON's
``request``/``response``), the richer ``message``/``result`` the timeline and the
diagram show (keystone auth scope, validated token, microversion, cache keys),
the token ids it mentions and its notes (``T1 admin@admin (bb9ff2e7)``, ``cache
miss for T1``).  Tokens appear as ``T1``, ``T2``, … — in full only when the user
asked (``--show-secrets``, then ``T1=<token>``).
"""

from __future__ import annotations

from . import protocols
from . import tokens as tok
from .model import Exchange, Token
from .protocols.base import PairText
from .protocols.http import auth_text, token_owner
from .protocols.mysql import mysql_response

__all__ = ["PairText", "Prose", "auth_text", "mysql_response", "token_owner"]


class Prose:
    """Texts for exchanges; tokens are numbered by the flow's :class:`~osflow.tokens.TokenRegistry`."""

    def __init__(self, registry: tok.TokenRegistry, show_secrets: bool) -> None:
        self.reg = registry
        self.show = show_secrets

    def text(self, ex: Exchange) -> PairText:
        return protocols.of(ex).text(ex, self)

    # ------------------------------------------------------------------ tokens

    def shown(self, t: Token, raw: str) -> str:
        return f"{t.id}={raw}" if self.show else t.id

    def key(self, key: str) -> tuple[str, str, Token | None]:
        """(plain, rich, token) for a memcached key."""
        if not tok.is_token_key(key):
            return key, key, None
        t = self.reg.see_cache_key(key)
        if t is None:
            shown = key if self.show else "tokens/<HMAC key: cannot be linked to a token>"
            return shown, shown, None
        if self.show:
            return key, f"{key} [{t.id}]", t
        return f"tokens/{t.fingerprint}…", f"tokens/… [{t.id}]", t
