"""The cache tiers: memory is bounded and LRU, disk survives restarts and shrugs off damage."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from publisher.cache import DiskCache, Entry, MemoryCache
from publisher.data import Data, DataFile, DataGlob


def entry(body: bytes = b"png-bytes", ttl: float | None = None) -> Entry:
    return Entry.of(body, "image/png", ttl)


async def test_memory_cache_evicts_least_recently_used_past_its_byte_bound() -> None:
    memory = MemoryCache(max_bytes=25)
    memory.put("a", entry(b"x" * 10))
    memory.put("b", entry(b"y" * 10))
    assert memory.get("a") is not None  # a is now the most recently used
    memory.put("c", entry(b"z" * 10))
    assert memory.get("b") is None
    assert memory.get("a") is not None and memory.get("c") is not None
    assert memory.size == 20


async def test_memory_cache_skips_an_entry_larger_than_itself() -> None:
    memory = MemoryCache(max_bytes=5)
    memory.put("big", entry(b"x" * 6))
    assert memory.get("big") is None and memory.size == 0


async def test_memory_cache_replacing_a_key_keeps_the_size_right() -> None:
    memory = MemoryCache(max_bytes=100)
    memory.put("a", entry(b"x" * 10))
    memory.put("a", entry(b"x" * 30))
    assert memory.size == 30 and len(memory) == 1


async def test_disk_cache_survives_a_restart(tmp_path: Path) -> None:
    stored = entry(ttl=60)
    await DiskCache(tmp_path).put("k" * 64, stored)
    assert await DiskCache(tmp_path).get("k" * 64) == stored


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-3],  # truncated body
        lambda raw: raw.replace(b"png-bytes", b"png-bytez"),  # body does not match its etag
        lambda raw: b"not json\n" + raw,  # header unreadable
        lambda raw: b"",  # empty file
        lambda raw: b'{"length": 9}\npng-bytes',  # header missing fields
    ],
)
async def test_a_damaged_disk_entry_is_a_miss_and_is_removed(tmp_path: Path, damage) -> None:
    disk = DiskCache(tmp_path)
    key = "d" * 64
    await disk.put(key, entry())
    path = disk.path(key)
    path.write_bytes(damage(path.read_bytes()))
    assert await disk.get(key) is None
    assert not path.exists()


async def test_disk_write_leaves_no_partial_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    disk = DiskCache(tmp_path)

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    await disk.put("e" * 64, entry())  # logged, not raised
    assert await disk.get("e" * 64) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_disk_cache_reports_whether_it_can_write(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path)
    assert disk.writable()
    tmp_path.chmod(0o500)
    try:
        assert disk.writable() is (os.geteuid() == 0)  # root writes anywhere
    finally:
        tmp_path.chmod(0o700)


async def test_freshness_follows_the_ttl() -> None:
    forever = entry()
    live = Entry(b"x", "image/png", '"e"', created=1000.0, ttl=60)
    assert forever.fresh_for() is None
    assert live.fresh_for(now=1030.0) == 30
    assert live.fresh_for(now=1090.0) == -30


async def test_memory_cache_drops_the_old_entry_when_the_new_one_is_too_big() -> None:
    memory = MemoryCache(max_bytes=10)
    memory.put("a", entry(b"x" * 5))
    memory.put("a", entry(b"x" * 20))
    assert memory.get("a") is None and memory.size == 0


async def test_an_entry_round_trips_through_its_stored_form() -> None:
    stored = entry(b"\x89PNG\n\nbody with newlines\n", ttl=5)
    assert Entry.from_bytes(stored.to_bytes()) == stored
    assert Entry.from_bytes(b"no header line") is None


async def test_an_entry_keeps_its_data_files_in_its_stored_form() -> None:
    data = Data(
        (DataFile("/data/sales.csv", 120, 1_700_000_000_123_456_789),),
        (DataGlob("/data/parts/*.parquet", ("/data/parts/a.parquet",)),),
        dropped=2,
    )
    stored = Entry.of(b"chart", "image/png", data=data)
    assert Entry.from_bytes(stored.to_bytes()) == stored
    damaged = stored.to_bytes().replace(b'"files": [[', b'"files": [[[')
    assert Entry.from_bytes(damaged) is None


async def test_sweep_keeps_the_disk_cache_within_its_size_dropping_the_least_used(
    tmp_path: Path,
) -> None:
    disk = DiskCache(tmp_path)
    for i in range(10):
        await disk.put(f"{i:02x}" + "a" * 62, entry(bytes([i]) * 1000))
        os.utime(disk.path(f"{i:02x}" + "a" * 62), (1000 + i, 1000 + i))
    await disk.get("00" + "a" * 62)  # used just now: the most recent
    size = sum(p.stat().st_size for p in tmp_path.glob("*/*"))
    assert disk.sweep(size) == 0
    removed = disk.sweep(size // 2)
    left = {p.name[:2] for p in tmp_path.glob("*/*")}
    assert removed >= 5 and "00" in left and "01" not in left
    assert sum(p.stat().st_size for p in tmp_path.glob("*/*")) <= size // 2


async def test_sweep_leaves_files_that_are_not_entries_alone(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path)
    await disk.put("ab" + "c" * 62, entry(b"x" * 1000))
    (tmp_path / "ab" / ".tmp-in-progress").write_bytes(b"y" * 5000)
    (tmp_path / "zz").mkdir()
    (tmp_path / "zz" / "someone-elses-file").write_bytes(b"z" * 5000)
    assert disk.sweep(1) == 1
    assert (tmp_path / "ab" / ".tmp-in-progress").exists()
    assert (tmp_path / "zz" / "someone-elses-file").exists()


async def test_a_write_past_the_disk_limit_evicts_at_once(tmp_path: Path) -> None:
    limit = 10_000
    disk = DiskCache(tmp_path, max_bytes=limit)
    for i in range(40):
        await disk.put(f"{i:02x}" + "b" * 62, entry(bytes([i]) * 1000))
        on_disk = sum(p.stat().st_size for p in tmp_path.glob("*/*"))
        assert on_disk <= limit, f"{on_disk} bytes on disk after write {i}"
        assert disk.size == on_disk
    assert await disk.get("27" + "b" * 62) is not None  # the newest stay
    assert await disk.get("00" + "b" * 62) is None  # the oldest went first


async def test_the_disk_limit_counts_entries_already_on_disk_at_start(tmp_path: Path) -> None:
    first = DiskCache(tmp_path)
    for i in range(10):
        await first.put(f"{i:02x}" + "c" * 62, entry(bytes([i]) * 1000))
    again = DiskCache(tmp_path, max_bytes=5_000)
    await again.put("ff" + "c" * 62, entry(b"new" * 300))
    assert sum(p.stat().st_size for p in tmp_path.glob("*/*")) <= 5_000
    assert await again.get("ff" + "c" * 62) is not None


async def test_a_use_makes_an_entry_the_last_to_be_evicted(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path, max_bytes=3_500)
    keys = [f"{i:02x}" + "d" * 62 for i in range(3)]
    for key in keys:
        await disk.put(key, entry(b"x" * 1000))
    assert await disk.get(keys[0]) is not None  # now the most recently used
    await disk.put("ee" + "d" * 62, entry(b"y" * 1000))
    assert await disk.get(keys[0]) is not None
    assert await disk.get(keys[1]) is None


async def test_concurrent_writes_keep_the_count_equal_to_the_bytes_on_disk(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path, max_bytes=8_000)
    keys = [f"{i:02x}" + "e" * 62 for i in range(20)]
    writes = [disk.put(keys[i % 20], entry(bytes([i % 251]) * (500 + i))) for i in range(300)]
    reads = [disk.get(keys[i % 20]) for i in range(100)]
    await asyncio.gather(*writes, *reads)
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("*/*") if not p.name.startswith("."))
    assert disk.size == on_disk <= 8_000
