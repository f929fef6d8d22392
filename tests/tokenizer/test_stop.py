"""Stop strings over streamed text, including stop strings split across tokens."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from radixserve.tokenizer.detokenizer import IncrementalDetokenizer
from radixserve.tokenizer.stop import StopStringMatcher


def _stream(matcher: StopStringMatcher, chunks: list[str]) -> tuple[str, bool]:
    out = []
    for chunk in chunks:
        text, matched = matcher.feed(chunk)
        out.append(text)
        if matched:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


def _oneshot(text: str, stops: list[str], include: bool) -> tuple[str, bool]:
    # The stop string complete first wins (earliest end), the longest on a tie.
    hits = [(text.find(s) + len(s), -len(s), s) for s in stops if s and s in text]
    if not hits:
        return text, False
    end, _, stop = min(hits)
    return text[: end if include else end - len(stop)], True


def test_holds_back_a_possible_start():
    m = StopStringMatcher(["STOP"])
    assert m.feed("hello ST") == ("hello ", False)
    assert m.held == "ST"
    assert m.feed("OP and more") == ("", True)
    assert m.matched_stop == "STOP"
    assert m.feed("later") == ("", True)


def test_releases_text_that_did_not_become_a_stop():
    m = StopStringMatcher(["STOP"])
    assert m.feed("a S") == ("a ", False)
    assert m.feed("T") == ("", False)
    assert m.feed("ART") == ("START", False)
    assert m.feed("x ST") == ("x ", False)
    assert m.flush() == "ST"


def test_include_stop_string_and_earliest_match():
    m = StopStringMatcher(["world", "lo w"], include_stop_str_in_output=True)
    assert m.feed("hello world!") == ("hello w", True)
    assert m.matched_stop == "lo w"
    m = StopStringMatcher(["ab", "abc"])  # "ab" is complete before "abc" is
    assert m.feed("xabc") == ("x", True) and m.matched_stop == "ab"
    m = StopStringMatcher(["b", "aba"])  # a stream sees "b" complete first
    assert m.feed("aba") == ("a", True) and m.matched_stop == "b"


def test_no_stops_passes_everything():
    m = StopStringMatcher(["", ""])
    assert m.feed("abc") == ("abc", False) and m.flush() == ""


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="abc\n", max_size=30),
    stops=st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4), max_size=3),
    cuts=st.lists(st.integers(0, 30), max_size=10),
    include=st.booleans(),
)
def test_chunking_does_not_change_the_result(text, stops, cuts, include):
    bounds = [0, *sorted(c for c in set(cuts) if c <= len(text)), len(text)]
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    got = _stream(StopStringMatcher(stops, include), chunks)
    assert got == _oneshot(text, stops, include)


def test_stop_string_split_across_tokens(smollm):
    text = "The answer is 42.\n\nUser: next question"
    ids = smollm.encode(text)
    detok = IncrementalDetokenizer(smollm)
    matcher = StopStringMatcher(["\n\nUser:"])
    emitted, consumed, matched = [], 0, False
    while not matched and consumed < len(ids):
        out, matched = matcher.feed(detok.feed(ids[consumed : consumed + 1]))
        emitted.append(out)
        consumed += 1
    assert matched and "".join(emitted) == "The answer is 42."
    assert consumed < len(ids)
    # the stop string really spans several tokens
    assert all("\n\nUser:" not in smollm.decode([i]) for i in ids)
