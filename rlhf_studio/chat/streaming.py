"""Advance one reply stream per pane in turn, so that all panes fill together from one thread.

    for index, update in interleave([stream_a, stream_b, stream_c]):
        ...   # update: the pane's text so far; None: its stream ended; or the exception that ended it

Round-robin is fair in tokens, not time: a pane on a larger model slows every round a little, and the panes
that finish early drop out so the others speed up. A failing pane (a model that cannot take the prompt) ends
with its exception and the others go on.
"""

from __future__ import annotations

from collections.abc import Iterator


def interleave(streams: list[Iterator[str]]) -> Iterator[tuple[int, str | Exception | None]]:
    """(pane index, next text / None at its end / the exception that ended it), each pane in turn."""
    active = list(range(len(streams)))
    while active:
        for index in list(active):
            try:
                yield index, next(streams[index])
            except StopIteration:
                active.remove(index)
                yield index, None
            except Exception as error:  # the pane shows it; the other panes keep streaming
                active.remove(index)
                yield index, error
