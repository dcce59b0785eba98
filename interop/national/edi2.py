"""EDI 2.0 Meldingstjener client (NHN's REST message server), ``api-version`` 2 or 3.

v2 (``msh-api-v2.json``): ``POST /Messages`` (201, the new id), ``GET /Messages`` (unread, per
receiver HER-id), ``GET /Messages/{id}/business-document``, ``PUT /Messages/{id}/read/{herId}``
(204), ``POST /Messages/{id}/apprec/{appRecSenderHerId}`` (201), ``GET /Messages/{id}/status``
and ``/apprec``. Every call carries ``api-version``, ``nhn-source-system`` and the HelseID DPoP
headers (the ``auth`` given, see :class:`interop.national.helseid.DpopAuth`).

v3 (no OpenAPI published; from NHN's pages, see standards/nhn/msh/README.md): lower-case paths,
``POST /messages`` answers **202**, the AppRec goes to ``POST /messages/{id}/apprec`` with the
sender HER-id in the body, "read" is ``PUT /messages/{id}/downloaded``, and a HER-id locked to
another HelseID client answers **423** (:class:`Edi2Locked`, never retried blindly).

AppRec status on the wire is ``Ok`` or ``Rejected`` exactly as the schema spells them; the KITH
code ``3`` (*OK, feil i delmelding*) is documented as unsupported, so it goes as ``Ok`` with its
error list.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

APPREC_STATUS_WIRE: dict[str, str] = {
    "1": "Ok",
    "2": "Rejected",
    "3": "Ok",
    "ok": "Ok",
    "rejected": "Rejected",
    "okerrorinmessagepart": "Ok",
}
"""KITH AppRec status code (8258) or any spelling seen in queued payloads → the v2 enum value."""

MAX_POST_BYTES = 35_000_000
"""NHN: "Max limit of 35 MB" per POST /Messages (counted on the request body, conservatively)."""

ApiVersion = Literal["2", "3"]


def apprec_status_wire(status: str) -> str:
    try:
        return APPREC_STATUS_WIRE[str(status).strip().lower()]
    except KeyError:
        raise ValueError(f"AppRec status {status!r} is neither Ok nor Rejected") from None


class Edi2Error(Exception):
    def __init__(self, message: str, *, status: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class Edi2Locked(Edi2Error):
    """v3 423: the HER-id is locked to another HelseID client (configuration, not load)."""


class Edi2TooLarge(Edi2Error):
    pass


@dataclass(frozen=True)
class Edi2Message:
    id: str
    receiver_her_id: int | None
    sender_her_id: int | None = None
    business_document_id: str | None = None
    is_apprec: bool | None = None


def _describe(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("error", "title", "detail") if body.get(k)]
        parts += [str(v) for v in body.get("validationErrors") or []]
        return "; ".join(parts)[:500] or r.text[:300]
    return r.text[:300]


class Edi2Client:
    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None,
        http: httpx.Client | None = None,
        api_version: ApiVersion = "2",
        source_system: str = "DHO Interop, v0.1.0",
        max_post_bytes: int = MAX_POST_BYTES,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.auth = auth
        self.http = http or httpx.Client(timeout=30.0)
        self.version = api_version
        self.headers = {"api-version": api_version, "nhn-source-system": source_system}
        self.max_post_bytes = max_post_bytes

    def _path(self, v2: str) -> str:
        return self.base + (v2.lower() if self.version == "3" else v2)

    def _call(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...],
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        url = self._path(path)
        content = None
        headers = dict(self.headers)
        if body is not None:
            content = orjson.dumps(body)
            if len(content) > self.max_post_bytes:
                raise Edi2TooLarge(
                    f"{method} {url}: {len(content)} bytes is over EDI 2.0's limit of "
                    f"{self.max_post_bytes} bytes per request",
                    transient=False,
                )
            headers["Content-Type"] = "application/json"
        try:
            r = self.http.request(
                method, url, content=content, params=params, headers=headers, auth=self.auth
            )
        except httpx.HTTPError as exc:
            raise Edi2Error(f"{method} {url}: {type(exc).__name__}: {exc}", transient=True) from exc
        if r.status_code in ok:
            return r
        what = f"{method} {url}: HTTP {r.status_code}: {_describe(r)}"
        if r.status_code == 423:
            raise Edi2Locked(what, status=423, transient=False)
        transient = r.status_code in (401, 408, 425, 429) or r.status_code >= 500
        raise Edi2Error(what, status=r.status_code, transient=transient)

    # ---- sending --------------------------------------------------------------------------
    def send(
        self,
        document: bytes,
        *,
        sender_her_id: int | None = None,
        receiver_her_ids: list[int] | None = None,
        content_type: str = "application/xml",
    ) -> str:
        """Post a business document (MsgHead XML, UTF-8); the Meldingstjener's message id."""
        body: dict[str, Any] = {
            "businessDocument": base64.b64encode(document).decode("ascii"),
            "contentType": content_type,
            "contentTransferEncoding": "base64",
        }
        if self.version == "3":
            body["senderHerId"] = sender_her_id
            body["receiverHerIds"] = receiver_her_ids or []
        r = self._call("POST", "/Messages", ok=(202,) if self.version == "3" else (201,), body=body)
        answer = r.json()
        return str(answer.get("id") if isinstance(answer, dict) else answer)

    def post_apprec(
        self, message_id: str, sender_her_id: int, status: str, errors: list[dict[str, Any]]
    ) -> str:
        wire = apprec_status_wire(status)
        body: dict[str, Any] = {"appRecStatus": wire}
        if errors or wire == "Rejected":
            body["appRecErrorList"] = [
                {"errorCode": str(e["errorCode"]), "details": str(e.get("details") or "")}
                | ({"description": e["description"]} if e.get("description") else {})
                for e in errors
            ]
        if self.version == "3":
            body["appRecSenderHerId"] = sender_her_id
            r = self._call("POST", f"/Messages/{message_id}/apprec", ok=(201, 202), body=body)
        else:
            r = self._call(
                "POST", f"/Messages/{message_id}/apprec/{sender_her_id}", ok=(201,), body=body
            )
        answer = r.json() if r.content else ""
        return str(answer.get("id") if isinstance(answer, dict) else answer)

    # ---- receiving ------------------------------------------------------------------------
    def unread(self, her_id: int, *, count: int = 100) -> list[Edi2Message]:
        if self.version == "3":
            raise Edi2Error(
                "api-version 3 delivers new messages as notifications (GET /notifications), "
                "which this client does not read yet; poll with api-version 2",
                transient=False,
            )
        r = self._call(
            "GET",
            "/Messages",
            ok=(200,),
            params={
                "ReceiverHerIds": her_id,
                "IncludeMetadata": "true",
                "MessagesToFetch": max(1, min(count, 100)),
            },
        )
        return [
            Edi2Message(
                str(m["id"]),
                m.get("receiverHerId"),
                m.get("senderHerId"),
                m.get("businessDocumentId"),
                m.get("isAppRec"),
            )
            for m in r.json()
        ]

    def business_document(self, message_id: str) -> bytes:
        body = self._call("GET", f"/Messages/{message_id}/business-document", ok=(200,)).json()
        if body.get("contentTransferEncoding", "base64").lower() != "base64":
            raise Edi2Error(
                f"message {message_id}: contentTransferEncoding "
                f"{body.get('contentTransferEncoding')!r} is not base64",
                transient=False,
            )
        return base64.b64decode(body["businessDocument"], validate=True)

    def mark_read(self, message_id: str, her_id: int) -> None:
        if self.version == "3":
            self._call(
                "PUT",
                f"/Messages/{message_id}/downloaded",
                ok=(200, 204),
                body={"receiverHerId": her_id},
            )
        else:
            self._call("PUT", f"/Messages/{message_id}/read/{her_id}", ok=(204,))

    def status(self, message_id: str) -> list[dict[str, Any]]:
        body = self._call("GET", f"/Messages/{message_id}/status", ok=(200,)).json()
        return list(body.get("statusList", []) if isinstance(body, dict) else body)

    def apprec_info(self, message_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/Messages/{message_id}/apprec", ok=(200,)).json())
