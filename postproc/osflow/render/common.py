"""Small helpers shared by the renderers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def frame_ranges(frames: Iterable[int], limit: int = 0) -> str:
    """Frame numbers as compact ranges.

    >>> frame_ranges([8, 9, 241])
    '8-9,241'
    >>> frame_ranges([1, 2, 3, 5, 7, 8], limit=2)
    '1-3,5,… (6 frames)'
    """
    nums = sorted(set(frames))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    if limit and len(parts) > limit:
        return ",".join(parts[:limit]) + f",… ({len(nums)} frames)"
    return ",".join(parts)


def seconds(t: float, origin: float) -> str:
    """Seconds from the first frame with 6 decimals (never negative zero).

    >>> seconds(10.0000004, 10.0)
    '0.000000'
    >>> seconds(12.5, 10.0)
    '2.500000'
    """
    v = t - origin
    text = f"{v:.6f}"
    return "0.000000" if text == "-0.000000" else text


@dataclass(frozen=True)
class RenderOptions:
    """How a flow is drawn, given to every renderer beside the flow (which holds only what was found).

    >>> RenderOptions().show_broker, RenderOptions(show_secrets=True).show_secrets
    (False, True)
    """

    #: the tokens in full beside their ids (``--show-secrets``: the pairs' words were written with them)
    show_secrets: bool = False
    show_broker: bool = False  #: RPC drawn through the broker, caller -> RabbitMQ -> callee (``--show-broker``)


#: The options a renderer draws with when it is given none.
DEFAULT = RenderOptions()
