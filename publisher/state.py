"""Typed keys for what the application holds; one module so views and app share them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .hits import RepeatHits
from .service import Publisher
from .settings import Settings
from .signing import Signer

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", Publisher)
SIGNER = web.AppKey("signer", Signer)
HITS = web.AppKey("hits", RepeatHits)
Health = Callable[[], Awaitable[dict[str, Any]]]
HEALTH: web.AppKey[Health] = web.AppKey("health")
