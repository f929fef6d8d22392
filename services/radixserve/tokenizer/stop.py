"""Stop strings over streamed text.

Text arrives in chunks (one per detokenizer step); a stop string can straddle chunks. The matcher
emits text as soon as it cannot be the start of a stop string and holds back the longest tail that
still could be, so a client never sees text that a later match would have cut.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


class StopStringMatcher:
    """Feed text chunks; get back what is safe to emit and whether a stop string matched.

    On a match the output ends right before the stop string (or right after it with
    ``include_stop_str_in_output``), ``matched_stop`` names it, and later feeds return nothing.
    When several stop strings match, the one that is complete first wins (the longest on a tie).
    Empty stop strings are ignored.
    """

    def __init__(self, stop: Iterable[str], include_stop_str_in_output: bool = False) -> None:
        self.stop = tuple(sorted({s for s in stop if s}, key=len, reverse=True))
        self.include_stop_str_in_output = include_stop_str_in_output
        self.matched_stop: str | None = None
        self._held = ""

    @property
    def matched(self) -> bool:
        return self.matched_stop is not None

    @property
    def held(self) -> str:
        """Text received but not emitted yet (a possible start of a stop string)."""
        return self._held

    def feed(self, text: str) -> tuple[str, bool]:
        """``(text safe to emit now, matched)`` after appending ``text``."""
        if self.matched:
            return "", True
        if not self.stop:
            return text, False
        buffer = self._held + text
        hit = self._first_match(buffer)
        if hit is not None:
            pos, stop = hit
            self.matched_stop = stop
            self._held = ""
            end = pos + len(stop) if self.include_stop_str_in_output else pos
            return buffer[:end], True
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """At the end of the stream: the held-back text (it never became a stop string)."""
        held, self._held = self._held, ""
        return "" if self.matched else held

    def _first_match(self, buffer: str) -> tuple[int, str] | None:
        """The stop string that is complete first (earliest end; the longest on a tie).

        NOTE: earliest *end*, not earliest start: a stream sees a short stop string complete
        before a longer one that started earlier, so only this rule gives the same answer
        however the text is cut into chunks.
        """
        best: tuple[int, str] | None = None
        for stop in self.stop:  # longest first, so a tie keeps the longest
            pos = buffer.find(stop)
            if pos >= 0 and (best is None or pos + len(stop) < best[0] + len(best[1])):
                best = (pos, stop)
        return best

    def _partial_tail(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self.stop:
            for k in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:k]):
                    longest = k
                    break
        return longest
