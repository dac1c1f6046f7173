"""Redis shared by several servers: the pipeline's layer below the disk, a tier and a cluster lock.

A chart rendered on one server is a hit on every other, and concurrent requests
for the same render on different servers run one execution: the first server
takes a lock (an owner token with a short lease it keeps renewing while it
renders), the others wait on a pub/sub channel and read the entry the owner
wrote. An owner that dies stops renewing, so its lock is gone within one lease.

Redis is an optimisation, never a dependency: when a call fails or is slow,
Redis is marked down (logged once), left alone for a back-off period, and every
request is served from the local tiers and rendered locally until a later call
succeeds again. No request fails because Redis failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from .cache import Entry
from .errors import Overloaded, PublisherError
from .outcome import MISS, Outcome
from .pipeline import FRESH, Freshness, Layer, Produce
from .settings import Settings

log = logging.getLogger(__name__)

ENTRY, LOCK, DONE, ERROR = (
    "publisher:entry:",
    "publisher:lock:",
    "publisher:done:",
    "publisher:error:",
)
CALL_TIMEOUT = 0.5  # seconds a Redis call (or connect) may take before Redis counts as down
BACKOFF = 1.0  # seconds Redis is left alone after a failure
POLL = 0.2  # seconds between checks while waiting, in case a pub/sub message is lost
LEASE = 5.0  # seconds a lock outlives its owner; the owner renews it every LEASE / 3

# The current owner's token, taking the lock first when nobody holds it.
_ACQUIRE = """
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class Unavailable(Exception):
    """Redis is down or just failed; the caller goes on without it."""


class RedisShared:
    """One Redis client per server, and whether Redis is up: every call goes through ``call``."""

    def __init__(self, settings: Settings, *, backoff: float = BACKOFF) -> None:
        if not settings.redis_url:
            raise ValueError("RedisShared needs settings.redis_url")
        self.settings = settings
        self.backoff = backoff
        self.client = aioredis.from_url(
            settings.redis_url,
            socket_timeout=CALL_TIMEOUT,
            socket_connect_timeout=CALL_TIMEOUT,
            # one retry, on a new connection, for a pooled one a restarted Redis closed;
            # none on a timeout, which would only make a slow Redis slower to notice
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self.up = True
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._retry_at = 0.0

    def health(self) -> dict[str, Any]:
        return {
            "configured": True,
            "up": self.up,
            "last_error": self.last_error,
            "down_since": self.down_since,
        }

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis command; raises ``Unavailable`` at once while Redis is backed off."""
        now = time.monotonic()
        if now < self._retry_at:
            raise Unavailable
        if not self.up:  # this call probes; the others keep skipping Redis until it answers
            self._retry_at = now + self.backoff
        try:
            result = await command()
        except ResponseError as e:  # Redis answered: a refused command, not an outage
            self.last_error = f"{type(e).__name__}: {e}"
            log.debug("redis refused a command: %s", e)
            raise Unavailable from e
        except (RedisError, OSError) as e:  # OSError covers TimeoutError
            self._went_down(e)
            raise Unavailable from e
        if not self.up:
            self.up, self.down_since, self._retry_at = True, None, 0.0
            log.info("redis is reachable again: sharing the cache and renders again")
        return result

    def _went_down(self, error: Exception) -> None:
        self._retry_at = time.monotonic() + self.backoff
        self.last_error = f"{type(error).__name__}: {error}"
        if self.up:
            self.up, self.down_since = False, time.time()
            log.warning(
                "redis is unreachable (%s): serving local tiers and rendering locally until it is back",
                self.last_error,
            )


class RedisLayer:
    """The shared tier and the cluster lock, as one layer: an entry rendered on any server
    answers on every other, and one key renders once in the cluster.

    The owner of a render writes its entry (or its error) before it wakes the
    waiters and lets go of the lock, so whoever looks next finds the result.
    Every entry expires after ``--redis-ttl`` (sooner for a live chart: once it
    is too stale to serve); Redis evicts sooner under its ``maxmemory`` policy.
    """

    name = "redis"

    def __init__(
        self,
        shared: RedisShared,
        below: Layer,
        freshness: Freshness,
        *,
        poll: float = POLL,
        lease: float = LEASE,
    ) -> None:
        self.shared = shared
        self.below = below
        self.freshness = freshness
        self.poll, self.lease = poll, lease
        settings = shared.settings
        # waiters elsewhere may pick up an owner's error while it would be answered here
        self.error_ttl = max(1, int(settings.error_ttl))
        client = shared.client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    async def get_or_render(self, key: str, produce: Produce, revalidate: bool = False) -> Outcome:
        entry = await self.get(key)
        if entry is not None:
            outcome = self.freshness.answer(entry, self.name, revalidate)
            if outcome is not None:
                return outcome
        token = secrets.token_hex(16)
        deadline = time.monotonic() + self.shared.settings.timeout + 10
        try:
            found = await self._follow(key, token, deadline)
        except Unavailable:
            return await self._render_here(key, produce, revalidate)
        if isinstance(found, Entry):
            return Outcome(found, MISS, self.name)  # rendered for us, on another server
        if found:
            return await self._own(key, token, produce, revalidate)
        log.info("gave up waiting for the render of %s elsewhere: rendering here", key)
        return await self._render_here(key, produce, revalidate)

    async def get(self, key: str) -> Entry | None:
        try:
            raw = await self.shared.call(lambda: self.shared.client.get(ENTRY + key))
        except Unavailable:
            return None
        return await self._decode(key, raw)

    async def put(self, key: str, entry: Entry) -> None:
        settings = self.shared.settings
        seconds = settings.redis_ttl
        left = entry.fresh_for(self.freshness.clock())
        if left is not None:
            seconds = min(seconds, left + settings.max_stale)
        if seconds < 1:
            return
        value = entry.to_bytes()
        with contextlib.suppress(Unavailable):
            await self.shared.call(
                lambda: self.shared.client.set(ENTRY + key, value, px=int(seconds * 1000))
            )

    async def _render_here(self, key: str, produce: Produce, revalidate: bool) -> Outcome:
        outcome = await self.below.get_or_render(key, produce, revalidate)
        await self.put(key, outcome.entry)
        return outcome

    async def _follow(self, key: str, token: str, deadline: float) -> Entry | bool:
        """The entry another server wrote, True once we own the lock, False at the deadline.

        Raises the error the owner recorded. The lock is looked at (or taken)
        before the results, so an owner that finishes in between is seen as
        finished, never as dead; a lock taken over a finished render is let go.
        """
        call = self.shared.call
        client = self.shared.client
        followed: bytes | None = None
        pubsub = client.pubsub()
        subscribed = False
        try:
            while time.monotonic() < deadline:
                owner = await call(
                    lambda: self._acquire(keys=[LOCK + key], args=[token, int(self.lease * 1000)])
                )
                mine = owner == token.encode()
                raw, error = await call(lambda: client.mget(ENTRY + key, ERROR + key))
                entry = await self._decode(key, raw)
                if entry is not None and self.freshness.judge(entry) != FRESH:
                    entry = None  # the stale entry a revalidation is replacing
                failed = _error_of(error, {followed, owner})
                if mine and (entry is not None or failed is not None):
                    await self._release_lock(key, token)
                if entry is not None:
                    return entry
                if failed is not None:
                    raise failed
                if mine:
                    return True
                followed = owner
                if not subscribed:
                    await call(lambda: pubsub.subscribe(DONE + key))
                    subscribed = True
                    continue  # look once more: the owner may have finished before we listened
                await call(
                    lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll)
                )
            return False
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _own(self, key: str, token: str, produce: Produce, revalidate: bool) -> Outcome:
        """Render while holding the lock; tell the waiters, with the error if it failed."""
        renewing = asyncio.ensure_future(self._keep(key, token))
        try:
            return await self._render_here(key, produce, revalidate)
        except PublisherError as e:
            if not isinstance(e, Overloaded):  # this server's load, not the render's fault
                record = _error_record(e, token)
                client = self.shared.client
                with contextlib.suppress(Unavailable):
                    await self.shared.call(
                        lambda: client.set(ERROR + key, record, ex=self.error_ttl)
                    )
            raise
        finally:
            renewing.cancel()
            await self._finish(key, token)

    async def _keep(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            with contextlib.suppress(Unavailable):
                await self.shared.call(
                    lambda: self._renew(keys=[LOCK + key], args=[token, int(self.lease * 1000)])
                )

    async def _finish(self, key: str, token: str) -> None:
        """Wake the waiters, then release the lock if it is still ours."""
        with contextlib.suppress(Unavailable):
            await self.shared.call(lambda: self.shared.client.publish(DONE + key, token))
        await self._release_lock(key, token)

    async def _release_lock(self, key: str, token: str) -> None:
        with contextlib.suppress(Unavailable):
            await self.shared.call(lambda: self._release(keys=[LOCK + key], args=[token]))

    async def _decode(self, key: str, raw: bytes | None) -> Entry | None:
        """The entry in a stored value; a damaged one is a miss, and is deleted."""
        if raw is None:
            return None
        entry = Entry.from_bytes(raw)
        if entry is None:
            log.warning("redis cache: damaged entry %s, dropped", key)
            with contextlib.suppress(Unavailable):
                await self.shared.call(lambda: self.shared.client.delete(ENTRY + key))
        return entry


def _error_record(error: PublisherError, token: str) -> str:
    record = {
        "token": token,
        "status": error.status,
        "code": error.code,
        "message": error.message,
        "details": error.details,
    }
    return json.dumps(record, default=str)


def _error_of(raw: bytes | None, owners: set[bytes | None]) -> PublisherError | None:
    """The error recorded by one of these owners, rebuilt with its status, code and message."""
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        if record["token"].encode() not in owners:
            return None
        error = PublisherError(str(record["message"]), **dict(record["details"]))
        error.status, error.code = int(record["status"]), str(record["code"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return error
