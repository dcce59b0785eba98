"""The worklist's «Siden» over real HTTP: since when a patient's deviation has lasted.

A deviation that went back to green and came back is a new episode (its «Siden» starts at the
first reading after the green); a Task stored before triage recorded «Siden» shows when it
was written, labelled as such — never a bare time that looks like the deviation just began.
Readings are posted to ``/fhir`` (judged after the write), the worklist is read as the
follow-up nurse, JSON and HTML, from a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from interop.api.app import create_app
from interop.care.deviation_episode import Episode, after_deviation, after_green
from interop.care.triage import TASK_CODE_SYSTEM as TASK_CODES
from tests.conftest import ADMIN_HEADERS
from tests.live_server import live_server
from tests.views.test_worklist import FNR_OID, GP_HPR, HPR_OID, MUNICIPALITY, ORGNR_OID

EPISODE, BACK_YELLOW, OLD_TASK, OTHER = (
    "13031353453",
    "02028099471",
    "15076500565",
    "01034091990",
)
PLAN = {
    "approvedBy": {"hpr": GP_HPR},
    "zones": [
        {"code": "2708-6", "unit": "%", "green": {"low": 94}, "yellow": {"low": 90}},
        {"code": "8867-4", "unit": "/min", "green": {"low": 50, "high": 100}},
    ],
}


def _words(at: datetime) -> str:
    return at.astimezone(ZoneInfo("Europe/Oslo")).strftime("%d.%m.%Y kl. %H:%M")


def _iso(at: datetime) -> str:
    return at.astimezone(ZoneInfo("Europe/Oslo")).isoformat(timespec="seconds")


class World:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        org = self._created(
            "Organization",
            {
                "name": "Fjordvik kommune",
                "identifier": [{"system": ORGNR_OID, "value": MUNICIPALITY}],
            },
        )
        gp = self._created("Practitioner", {"identifier": [{"system": HPR_OID, "value": GP_HPR}]})
        self.ids = {
            fnr: self._created(
                "Patient",
                {
                    "identifier": [{"system": FNR_OID, "value": fnr}],
                    "name": [{"family": "Nordmann", "given": [given]}],
                    "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
                    "managingOrganization": {"reference": f"Organization/{org}"},
                },
            )
            for fnr, given in (
                (EPISODE, "Episode"),
                (BACK_YELLOW, "Tilbake"),
                (OLD_TASK, "Gammel"),
                (OTHER, "Annen"),
            )
        }
        for fnr in self.ids:
            r = http.put(f"/api/v1/patients/{fnr}/plan", json=PLAN)
            assert r.status_code == 201, r.text
        r = http.post(
            "/api/v1/actors",
            json={"role": "followup", "organization": {"orgnr": MUNICIPALITY}, "name": "Siri"},
        )
        assert r.status_code == 201, r.text
        self.nurse = {"Authorization": f"Bearer {r.json()['key']}"}

    def _created(self, rtype: str, body: dict[str, Any]) -> str:
        r = self.http.post(f"/fhir/{rtype}", json={"resourceType": rtype, **body})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def reading(self, fnr: str, value: float, at: datetime, code: str = "2708-6") -> str:
        unit = {"2708-6": ("%", "%"), "8867-4": ("/min", "/min")}[code]
        return self._created(
            "Observation",
            {
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": f"Patient/{self.ids[fnr]}"},
                "effectiveDateTime": at.isoformat(timespec="seconds"),
                "valueQuantity": {
                    "value": value,
                    "unit": unit[0],
                    "system": "http://unitsofmeasure.org",
                    "code": unit[1],
                },
            },
        )

    def task(self, fnr: str) -> dict[str, Any]:
        r = self.http.get("/fhir/Task", params={"patient": self.ids[fnr], "status": "requested"})
        assert r.status_code == 200, r.text
        tasks = [e["resource"] for e in r.json().get("entry", [])]
        assert len(tasks) == 1, tasks
        return tasks[0]

    def rows(self) -> dict[str, dict[str, Any]]:
        r = self.http.get(
            "/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=self.nurse
        )
        assert r.status_code == 200, r.text
        return {row["patient"]["nationalId"]: row for row in r.json()["rows"]}

    def page_group(self, fnr: str) -> str:
        r = self.http.get(
            "/api/v1/worklist",
            params={"organization": MUNICIPALITY},
            headers={**self.nurse, "Accept": "text/html"},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        before, after = r.text.split(f'<span class="fnr">{fnr}</span>')
        return before.rsplit("<tbody>", 1)[1] + after.split("</tbody>")[0]


@contextmanager
def _served(settings, services) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """The world on a real server, spoken to over HTTP with the admin key."""
    with (
        live_server(create_app(settings, services=services)) as base,
        httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=30) as http,
    ):
        yield World(http)


def test_a_deviation_back_after_a_green_reading_is_a_new_episode(settings, services) -> None:  # type: ignore[no-untyped-def]
    """Red, green, red: «Siden» is the second red reading (the deviation resolved and came
    back); the green reading leaves the Task open with a note the nurse reads, and further
    green readings write nothing. Red, green, yellow: the Task stays red (an unhandled red is
    never moved down the list by a milder reading), «Siden» is the yellow reading, and the
    words say when it was red. Another measurement's green reading, and another patient's,
    end nothing."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    with _served(settings, services) as w:
        w.reading(EPISODE, 86, t0)  # red: the Task opens
        w.reading(OTHER, 85, t0)
        first = w.task(EPISODE)
        assert w.rows()[EPISODE]["task"]["since"]["text"] == _words(t0)
        # a green pulse and another patient's green SpO2 end nothing
        w.reading(EPISODE, 70, t0 + timedelta(minutes=30), code="8867-4")
        w.reading(OTHER, 97, t0 + timedelta(minutes=30))
        assert w.task(EPISODE)["meta"]["versionId"] == first["meta"]["versionId"]
        w.reading(EPISODE, 88, t0 + timedelta(hours=1))  # red again: the same episode
        assert w.rows()[EPISODE]["task"]["since"]["text"] == _words(t0)

        w.reading(EPISODE, 97, t0 + timedelta(hours=2))  # back to green
        ended = w.task(EPISODE)
        assert ended["status"] == "requested" and ended["priority"] == "asap"
        assert ended["note"][-1]["text"] == (
            f"Grønn måling: Oksygenmetning (SpO2) 97 %, målt {_words(t0 + timedelta(hours=2))}. "
            "Neste gule eller røde måling regnes som et nytt avvik."
        )
        row = w.rows()[EPISODE]
        assert row["task"]["since"]["text"] == _words(t0)  # the episode the Task is about
        assert "Neste gule eller røde måling" in w.page_group(EPISODE)
        w.reading(EPISODE, 96, t0 + timedelta(hours=2, minutes=30))  # still green
        assert w.task(EPISODE)["meta"]["versionId"] == ended["meta"]["versionId"]

        back = t0 + timedelta(hours=3)
        w.reading(EPISODE, 85, back)  # red again after green: a new episode
        w.reading(EPISODE, 84, back + timedelta(minutes=20))
        row = w.rows()[EPISODE]
        task = row["task"]
        assert task["id"] == first["id"] and task["reason"]["code"] == "red"
        assert task["since"] == {"time": _iso(back), "text": _words(back), "basis": "reading"}
        assert [r["since"] for r in row["reasons"] if r["code"] == "red"] == [task["since"]]
        assert row["since"] == task["since"]
        group = w.page_group(EPISODE)
        assert f"<td>{_words(back)}</td>" in group
        # the other patient's Task: its own red reading, untouched by this patient's
        assert w.rows()[OTHER]["task"]["since"]["text"] == _words(t0)

        # red, green, yellow: the Task stays red; «Siden» is the yellow reading
        w.reading(BACK_YELLOW, 85, t0)
        w.reading(BACK_YELLOW, 96, t0 + timedelta(hours=1))
        yellow_at = t0 + timedelta(hours=2)
        w.reading(BACK_YELLOW, 92, yellow_at)
        row = w.rows()[BACK_YELLOW]
        assert row["rank"] == w.rows()[EPISODE]["rank"]  # still among the red
        assert row["task"]["priority"] == "asap" and row["task"]["reason"]["code"] == "red"
        words = f"{_words(yellow_at)} (nytt avvik etter grønn måling; rød måling {_words(t0)})"
        assert row["task"]["since"] == {
            "time": _iso(yellow_at),
            "text": words,
            "basis": "reading",
        }
        assert f"<td>{words}</td>" in w.page_group(BACK_YELLOW)
        # a red reading in the new episode: red from then
        red_again = yellow_at + timedelta(minutes=30)
        w.reading(BACK_YELLOW, 86, red_again)
        assert w.rows()[BACK_YELLOW]["task"]["since"]["text"] == (
            f"{_words(yellow_at)} (rød fra {_words(red_again)})"
        )


def test_a_task_stored_before_since_was_recorded_says_what_its_time_is(settings, services) -> None:  # type: ignore[no-untyped-def]
    """A red deviation Task written before triage recorded «Siden» (no ``since`` input): the
    worklist shows when the Task was written, labelled «senest … (da oppgaven ble
    opprettet)», in JSON (``basis`` ``task-created``) and on the page; one without even an
    ``authoredOn`` reads «ukjent», never a blank or a time that looks like just now. A
    reading after that does not make up a «Siden» from itself."""
    written = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    with _served(settings, services) as w:
        old = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "priority": "asap",
            "code": {
                "coding": [{"system": TASK_CODES, "code": "assess-deviation"}],
                "text": "Vurder rød SpO2",
            },
            "description": "Rød måling: SpO2 85 %",
            "for": {"reference": f"Patient/{w.ids[OLD_TASK]}"},
            "authoredOn": written.isoformat(timespec="seconds"),
            "input": [
                {"type": {"text": "measurement code"}, "valueCode": "2708-6"},
                {"type": {"text": "zone"}, "valueCode": "red"},
            ],
        }
        r = w.http.post("/fhir/Task", json=old)
        assert r.status_code == 201, r.text
        label = f"senest {_words(written)} (da oppgaven ble opprettet)"
        task = w.rows()[OLD_TASK]["task"]
        assert task["since"] == {"time": _iso(written), "text": label, "basis": "task-created"}
        assert f"<td>{label}</td>" in w.page_group(OLD_TASK)

        # a further red reading now: still the labelled time, not this reading's
        w.reading(OLD_TASK, 86, datetime.now(UTC).replace(microsecond=0))
        assert w.task(OLD_TASK)["id"] == r.json()["id"]
        assert w.rows()[OLD_TASK]["task"]["since"]["text"] == label

        # no authoredOn at all: «ukjent»
        bare = {**old, "priority": "urgent"}
        bare.pop("authoredOn")
        bare["for"] = {"reference": f"Patient/{w.ids[OTHER]}"}
        assert w.http.post("/fhir/Task", json=bare).status_code == 201
        assert w.rows()[OTHER]["task"]["since"] is None
        assert "<td>ukjent</td>" in w.page_group(OTHER)


def test_readings_out_of_time_order_place_themselves_by_their_own_time() -> None:
    """The episode's rules for readings arriving out of time order (within the late window):
    an earlier red moves «Siden» back, a green taken inside the run ends the part before it
    («Siden» becomes the newest deviating reading: at least since then, never too early), a
    green taken before the episode or after the green that ended it changes nothing."""
    at = "2026-12-07T0{}:00:00+01:00".format
    ep = Episode(since=at(5), zone_since=at(5), last=at(5))  # as a new Task has it
    assert after_deviation(ep, at(4), 0).since == at(4)  # an earlier red of the same run
    ep = after_deviation(ep, at(7), 0)
    assert after_green(ep, at(3)) is None  # before the episode
    inside = after_green(ep, at(6))
    assert inside is not None and inside.since == at(7) and inside.ended is None
    ended = after_green(ep, at(8))
    assert ended is not None and ended.ended == at(8) and ended.since == at(5)
    assert after_green(ended, at(9)) is None  # already ended
    # a red taken before that green (arrived late) belongs to the ended episode
    assert after_deviation(ended, at(7), 0).since == at(5)
    new = after_deviation(ended, at(9), -1)  # yellow after the green: a new episode
    assert new == Episode(since=at(9), zone_since=at(5), last=at(9))
    # a Task with no recorded times keeps «Siden» unknown (never guessed from a reading)
    legacy = after_deviation(Episode(), at(9), 0)
    assert legacy.since is None and legacy.zone_since is None and legacy.last == at(9)
