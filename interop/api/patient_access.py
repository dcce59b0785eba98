"""The FastAPI dependency for the service's own endpoints with a patient in the path
(``/api/v1/patients/{fødselsnummer}/…``): who acts, which patient, and whether the policy lets
that actor do this to that patient's data — decided before the endpoint runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request

from interop.access.actor import Actor
from interop.access.policy import NOT_YOURS, Action
from interop.access.scope import PatientScope
from interop.api.auth import require_actor, require_form_actor
from interop.fhir.outcome import error
from interop.identifiers import person_id_system
from interop.patients import patient_by_identifier
from interop.services import Services


@dataclass(frozen=True, slots=True)
class PatientAccess:
    actor: Actor
    patient_id: str
    """The FHIR Patient id."""
    national_id: str
    """The fødselsnummer or D-nummer from the path."""
    scope: PatientScope


def patient_access(action: Action, *, form: bool = False) -> Callable[..., PatientAccess]:
    """``Depends(patient_access(Action.READ))``: 422 for a malformed number, 404 for an unknown
    patient — for admins only; any other actor gets the same 403 for an unknown person as for
    another GP's patient, so the answer never tells whether a fødselsnummer is ours. (A plain
    function: FastAPI runs it in a worker thread, where its audit write may wait.) ``form``:
    a page's form, which may carry the token as a form field (:func:`require_form_actor`)."""

    def dependency(
        national_id: str,
        request: Request,
        actor: Actor = Depends(require_form_actor if form else require_actor),
    ) -> PatientAccess:
        svc: Services = request.app.state.services
        svc.policy.require_role(actor, action)
        system = person_id_system(national_id)
        if system is None:
            raise error(422, "value", f"{national_id!r} is not a valid fødselsnummer or D-nummer")
        with svc.store.reader() as conn:
            pid = patient_by_identifier(conn, system, national_id)
        if pid is None:
            if actor.is_admin:
                raise error(404, "not-found", f"no Patient with {system}|{national_id}")
            raise error(403, "forbidden", NOT_YOURS)
        scope = svc.policy.require_patient(actor, pid, action)
        return PatientAccess(actor, pid, national_id, scope)

    return dependency
