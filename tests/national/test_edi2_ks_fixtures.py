"""The EDI 2.0 client reads the real wire shapes KS's client tests use (standards/nhn/msh/
examples/ks-fixtures): string enums, ``appRecStatus: null``, an unknown extra property, the new
message id as a JSON string, a base64 MsgHead test message."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from interop.national.edi2 import Edi2Client
from tests.conftest import STANDARDS
from tests.live_server import live_server

KS = STANDARDS / "nhn" / "msh" / "examples" / "ks-fixtures"
MID = "0c8f3d36-f9e7-4e3f-9d5c-c820fa9b5773"


def _app(files: dict[tuple[str, str], tuple[int, Path]]) -> Starlette:
    async def handle(request: Request) -> Response:
        status, path = files[(request.method, request.url.path)]
        return Response(path.read_bytes(), status, media_type="application/json")

    return Starlette(routes=[Route("/{p:path}", handle, methods=["GET", "POST", "PUT"])])


def test_client_reads_ks_wire_shapes() -> None:
    files = {
        ("GET", "/Messages"): (200, KS / "get-messages-response.json"),
        ("GET", f"/Messages/{MID}/business-document"): (
            200,
            KS / "get-business-document-response.json",
        ),
        ("GET", f"/Messages/{MID}/status"): (200, KS / "get-status.json"),
        ("GET", f"/Messages/{MID}/apprec"): (200, KS / "get-apprecinfo-rejected.json"),
        ("POST", "/Messages"): (201, KS / "post-message-response.txt"),
        ("POST", f"/Messages/{MID}/apprec/8143060"): (201, KS / "post-apprec-response.txt"),
    }
    with live_server(_app(files)) as base:
        client = Edi2Client(base, auth=None)
        listed = client.unread(8143060)
        assert [m.id for m in listed][0] == MID and listed[0].receiver_her_id == 8143060
        doc = client.business_document(MID)
        assert doc.lstrip().startswith(b"<?xml") and b"MsgHead" in doc
        assert client.status(MID) == [
            {
                "receiverHerId": 8094866,
                "transportDeliveryState": "Unconfirmed",
                "appRecStatus": None,
            }
        ]
        [info] = client.apprec_info(MID)
        assert (
            info["appRecStatus"] == "Rejected" and info["appRecErrorList"][0]["errorCode"] == "E10"
        )
        expected = json.loads((KS / "post-message-response.txt").read_text())
        assert client.send(b'<?xml version="1.0" encoding="UTF-8"?><MsgHead/>') == expected
        assert client.post_apprec(MID, 8143060, "Rejected", [{"errorCode": "E10", "details": "x"}])
