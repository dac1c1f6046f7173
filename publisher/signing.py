"""Signed chart URLs: with a secret set, only URLs its holder signed are rendered.

The signature is an HMAC-SHA256 over the path and the query pairs in the
order given (``_sig`` aside), so no parameter can be added, dropped, changed
or moved: ``regions=North&regions=West`` draws North first, and its
signature must not pass for ``regions=West&regions=North``. A signed URL is
therefore used as it was printed. An optional ``_expires`` (epoch seconds)
is covered by the signature too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from aiohttp import web

from .errors import Forbidden

SIG, EXPIRES = "_sig", "_expires"
PATH_SAFE = "/%!$&'()*+,;=:@"  # what a path may hold unescaped; "%" keeps existing escapes


def signature(secret: str, path: str, pairs: Iterable[tuple[str, str]]) -> str:
    """The MAC of the decoded path and every pair but ``_sig``, in the order given.

    Order matters because repeated keys are a list, and a list's order is
    data the notebook sees. ``urlencode`` escapes ``&``, ``=`` and ``?`` inside
    keys and values, so two different URLs never give one message.
    """
    message = path + "?" + urlencode([p for p in pairs if p[0] != SIG])
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_url(url: str, secret: str, expires: int | None = None) -> str:
    """The same URL with ``_sig`` (and ``_expires``, if given) added, ready to paste.

    A path given unescaped (``/charts/Q1 (draft).png``) comes back escaped;
    the signature covers the decoded path, so either spelling verifies.
    """
    parts = urlsplit(url)
    pairs = [
        p for p in parse_qsl(parts.query, keep_blank_values=True) if p[0] not in (SIG, EXPIRES)
    ]
    if expires is not None:
        pairs.append((EXPIRES, str(expires)))
    pairs.append((SIG, signature(secret, unquote(parts.path), pairs)))
    path = quote(parts.path, safe=PATH_SAFE)
    return urlunsplit(parts._replace(path=path, query=urlencode(pairs)))


class Signer:
    """Checks requests when a secret is set; with none, every URL is allowed."""

    def __init__(self, secret: str | None) -> None:
        if secret is not None and not secret.strip():
            raise ValueError("an empty secret would turn signing off: give a key, or None")
        self.secret = secret

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def sign(self, url: str) -> str:
        return sign_url(url, self.secret) if self.secret else url

    def check(self, request: web.Request) -> None:
        if not self.secret:
            return
        pairs = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
        query = dict(pairs)
        given = query.get(SIG)
        if given is None:
            raise Forbidden("this server only renders signed URLs: the URL has no _sig")
        expected = signature(self.secret, request.path, pairs)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Forbidden("the URL's signature does not match it")
        expires = query.get(EXPIRES)
        if expires is not None:
            try:
                if float(expires) < time.time():
                    raise Forbidden("the signed URL has expired")
            except ValueError:
                raise Forbidden("_expires must be epoch seconds") from None
