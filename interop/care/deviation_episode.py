"""Since when a deviation has lasted: the episode a deviation Task is about.

An *episode* is the unbroken run of yellow/red readings of one measurement: a green reading
ends it, and a yellow/red reading after that green begins a new one — a deviation that
resolved and came back is a new episode, whether or not a nurse has completed the Task yet.
The Task's ``since`` input (:data:`SINCE_INPUT`, the worklist's «Siden») is the first reading
of the current episode; ``zone since`` is the first reading in the Task's zone (the worst the
Task has seen: a red that went back to green, then yellow, leaves an open Task red, so an
unhandled red is never moved down the list by a milder reading).

The episode is kept in the Task's inputs, read and written with the Task itself, so judging a
reading costs no extra statement:

- ``since``: the first reading of the current episode (unknown on a Task written before it
  had one: left unknown, never guessed from a later reading);
- ``zone since``: the first reading in the Task's zone within the episodes it has seen (a
  worse zone sets it; the same zone again after a green sets it to the new episode's);
- ``last deviation``: the newest yellow/red reading of the episode;
- ``green after``: the first green reading after ``last deviation`` — the episode has ended.

Readings that arrive out of time order are placed by their own time: an earlier yellow/red
reading of the same episode moves ``since`` back; a green reading taken *inside* the episode
(before its newest deviating reading) ends the part before it, and since the readings between
that green and the newest one are not kept in the Task, ``since`` becomes the newest deviating
reading — a time the deviation has lasted from at least, never one it had not yet begun.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from interop.care.task_inputs import input_named, with_input, without_inputs
from interop.fhir.dates import fhir_instant

SINCE_INPUT = "since"
"""The Task input (``type.text``, ``valueDateTime``) saying since when its reason holds: for a
deviation the first reading of the current episode (see the module's text), for a missing
measurement the time of the last reading (or the plan's start), for readings nobody judges
the first of them."""
ZONE_SINCE_INPUT = "zone since"
LAST_INPUT = "last deviation"
ENDED_INPUT = "green after"
_INPUTS = {
    "since": SINCE_INPUT,
    "zone_since": ZONE_SINCE_INPUT,
    "last": LAST_INPUT,
    "ended": ENDED_INPUT,
}


@dataclass(frozen=True)
class Episode:
    """The times (FHIR dateTimes as the readings stated them) of a deviation Task's episode."""

    since: str | None = None
    zone_since: str | None = None
    last: str | None = None
    ended: str | None = None


def _input_time(task: dict[str, Any], name: str) -> str | None:
    return input_named(task, name, "valueDateTime")


def task_since(task: dict[str, Any]) -> str | None:
    """Since when a Task's reason holds (its ``since`` input), None when it has none (a Task
    written before it had one, or a Task whose reason is its own creation)."""
    return _input_time(task, SINCE_INPUT)


def task_zone_since(task: dict[str, Any]) -> str | None:
    """Since when a deviation Task's zone holds (None when not recorded)."""
    return _input_time(task, ZONE_SINCE_INPUT)


def since_input(inputs: list[dict[str, Any]], since: str) -> list[dict[str, Any]]:
    """The inputs with ``since`` as the time the Task's reason holds from (replacing any)."""
    return with_input(inputs, SINCE_INPUT, "valueDateTime", since)


def episode_of(task: dict[str, Any]) -> Episode:
    return Episode(**{field: _input_time(task, name) for field, name in _INPUTS.items()})


def with_episode(inputs: list[dict[str, Any]], episode: Episode) -> list[dict[str, Any]]:
    """The Task's inputs with the episode's times (replacing any; an unknown time is left
    out, never written as a guess)."""
    return without_inputs(inputs, _INPUTS.values()) + [
        {"type": {"text": name}, "valueDateTime": value}
        for field, name in _INPUTS.items()
        if (value := getattr(episode, field)) is not None
    ]


def _before(a: str, b: str) -> bool:
    """Whether ``a`` was before ``b`` (False when either cannot be read)."""
    try:
        return fhir_instant(a) < fhir_instant(b)
    except ValueError:
        return False


def _earlier(a: str | None, b: str) -> str:
    return b if a is None or _before(b, a) else a


def _later(a: str | None, b: str) -> str:
    return b if a is None or _before(a, b) else a


def after_deviation(episode: Episode, at: str, rank_change: int) -> Episode:
    """The episode after a yellow/red reading taken at ``at``. ``rank_change``: the reading's
    zone against the Task's zone before it (> 0 worse — or a Task with no zone yet —, 0 the
    same, < 0 milder)."""
    if episode.ended is not None and _before(episode.ended, at):
        # back after a green reading: a new episode
        zone_since = at if rank_change >= 0 else episode.zone_since
        return Episode(since=at, zone_since=zone_since, last=at, ended=None)
    since = None if episode.since is None else _earlier(episode.since, at)
    zone_since = episode.zone_since
    if rank_change > 0:
        zone_since = at
    elif rank_change == 0 and zone_since is not None:  # unknown stays unknown
        # the zone as in an earlier episode: from this episode's first reading in it
        old = since is not None and _before(zone_since, since)
        zone_since = at if old else _earlier(zone_since, at)
    return Episode(since, zone_since, _later(episode.last, at), episode.ended)


def after_green(episode: Episode, at: str) -> Episode | None:
    """The episode after a green reading taken at ``at``; None when it changes nothing (a
    green before the episode, or after the green that already ended it)."""
    last = episode.last or episode.since
    if last is not None and not _before(last, at):
        # taken inside the episode (arrived out of order): the part before it has ended
        if episode.since is not None and _before(episode.since, at):
            return replace(episode, since=last)
        return None
    if episode.ended is None or _before(at, episode.ended):
        return replace(episode, ended=at)
    return None
