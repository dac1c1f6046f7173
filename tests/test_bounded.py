"""The bounded memo the server keeps its URL, render and failure maps in."""

from publisher.bounded import Bounded


def test_past_its_limit_the_key_used_longest_ago_goes() -> None:
    memo: Bounded[str, int] = Bounded(2)
    memo["a"] = 1
    memo["b"] = 2
    memo["a"] = 3  # set again: now the newest
    memo["c"] = 4
    assert dict(memo) == {"a": 3, "c": 4}
    memo.move_to_end("a")  # touched on a read
    memo["d"] = 5
    assert list(memo) == ["a", "d"]


def test_every_way_in_keeps_the_bound_and_a_copy_keeps_it_too() -> None:
    memo: Bounded[str, int] = Bounded(2)
    memo.update(a=1, b=2, c=3)
    memo.setdefault("d", 4)
    assert list(memo) == ["c", "d"]
    twin = memo.copy()
    twin["e"] = 5
    assert list(twin) == ["d", "e"] and list(memo) == ["c", "d"]
