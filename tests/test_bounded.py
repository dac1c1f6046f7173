"""The bounded memo the server keeps its URL, render and failure maps in."""

from publisher.bounded import Bounded


def test_past_its_limit_the_key_used_longest_ago_goes() -> None:
    memo: Bounded[str, int] = Bounded(2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("a", 3)  # put again: now the newest
    memo.put("c", 4)
    assert dict(memo) == {"a": 3, "c": 4}
    memo.move_to_end("a")  # touched on a read
    memo.put("d", 5)
    assert list(memo) == ["a", "d"]
