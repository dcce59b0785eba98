"""A local server implementing NHN's documented Meldingstjener (EDI 2.0) REST contract.

Only for tests and benchmarks on loopback: it keeps messages in memory, routes them by the
receiver HER-id found in the MsgHead, and answers the calls the EDI 2.0 client makes.
"""

from __future__ import annotations

import base64
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from lxml import etree

NS = {"mh": "http://www.kith.no/xmlstds/msghead/2006-05-24"}


@dataclass
class Stored:
    id: str
    sender_her_id: int | None
    receiver_her_id: int | None
    content_type: str
    document: bytes
    read_by: set[int] = field(default_factory=set)
    apprecs: list[dict[str, Any]] = field(default_factory=list)


def _her_ids(doc: bytes) -> tuple[int | None, int | None]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(doc, parser)
    except etree.XMLSyntaxError:
        return None, None

    def last_herid(path: str) -> int | None:
        ids = root.xpath(path + "//mh:Ident[mh:TypeId/@V='HER']/mh:Id/text()", namespaces=NS)
        return int(ids[-1]) if ids and str(ids[-1]).isdigit() else None

    return last_herid("//mh:Sender"), last_herid("//mh:Receiver")


def build_app() -> tuple[FastAPI, dict[str, Stored]]:
    app = FastAPI()
    store: dict[str, Stored] = {}
    lock = threading.Lock()

    def check(version: str | None) -> None:
        if version != "2":
            raise HTTPException(400, "api-version header must be 2")

    @app.post("/Messages", status_code=201)
    async def post_message(
        request: Request, api_version: str | None = Header(default=None)
    ) -> Response:
        check(api_version)
        body = await request.json()
        if body.get("contentTransferEncoding") != "base64" or "businessDocument" not in body:
            raise HTTPException(400, "businessDocument (base64) required")
        doc = base64.b64decode(body["businessDocument"])
        sender, receiver = _her_ids(doc)
        if receiver is None:
            raise HTTPException(400, "no receiver HER-id in the MsgHead")
        mid = str(uuid.uuid4())
        with lock:
            store[mid] = Stored(
                mid, sender, receiver, body.get("contentType", "application/xml"), doc
            )
        return JSONResponse(mid, status_code=201)

    @app.get("/Messages")
    def list_messages(
        receiverHerIds: int,
        includeMetadata: bool = False,
        api_version: str | None = Header(default=None),
    ) -> list[dict[str, Any]]:  # noqa: N803
        check(api_version)
        with lock:
            unread = [
                m
                for m in store.values()
                if m.receiver_her_id == receiverHerIds and receiverHerIds not in m.read_by
            ]
        out = []
        for m in unread:
            item: dict[str, Any] = {"id": m.id, "receiverHerId": m.receiver_her_id}
            if includeMetadata:
                item.update({"contentType": m.content_type, "senderHerId": m.sender_her_id})
            out.append(item)
        return out

    @app.get("/Messages/{mid}/business-document")
    def business_document(
        mid: str, api_version: str | None = Header(default=None)
    ) -> dict[str, str]:
        check(api_version)
        m = store.get(mid)
        if m is None:
            raise HTTPException(404, "unknown message")
        return {
            "businessDocument": base64.b64encode(m.document).decode(),
            "contentType": m.content_type,
            "contentTransferEncoding": "base64",
        }

    @app.put("/Messages/{mid}/read/{her_id}", status_code=204)
    def mark_read(
        mid: str, her_id: int, api_version: str | None = Header(default=None)
    ) -> Response:
        check(api_version)
        m = store.get(mid)
        if m is None:
            raise HTTPException(404, "unknown message")
        m.read_by.add(her_id)
        return Response(status_code=204)

    @app.get("/Messages/{mid}/status")
    def status(mid: str, api_version: str | None = Header(default=None)) -> list[dict[str, Any]]:
        check(api_version)
        m = store.get(mid)
        if m is None:
            raise HTTPException(404, "unknown message")
        return [
            {
                "receiverHerId": m.receiver_her_id,
                "transportDeliveryState": "Acknowledged" if m.read_by else "Unconfirmed",
                "appRecStatus": m.apprecs[-1]["appRecStatus"] if m.apprecs else None,
            }
        ]

    @app.post("/Messages/{mid}/apprec/{sender_her_id}", status_code=201)
    async def post_apprec(
        mid: str,
        sender_her_id: int,
        request: Request,
        api_version: str | None = Header(default=None),
    ) -> Response:
        check(api_version)
        m = store.get(mid)
        if m is None:
            raise HTTPException(404, "unknown message")
        body = await request.json()
        body["senderHerId"] = sender_her_id
        m.apprecs.append(body)
        return JSONResponse(str(uuid.uuid4()), status_code=201)

    @app.get("/Messages/{mid}/apprec")
    def get_apprec(
        mid: str, api_version: str | None = Header(default=None)
    ) -> list[dict[str, Any]]:
        check(api_version)
        m = store.get(mid)
        if m is None:
            raise HTTPException(404, "unknown message")
        return m.apprecs

    return app, store
