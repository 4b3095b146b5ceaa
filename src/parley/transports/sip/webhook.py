"""The ``realtime.call.incoming`` webhook an incoming SIP call posts, signed the Standard Webhooks
way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import aiohttp

from parley import ids

log = logging.getLogger("parley.sip")

TIMEOUT_S = 10.0


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value; ``secret`` is ``whsec_<base64 key>`` (or a raw key)."""
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def incoming_call_event(call_id: str, sip_headers: list[tuple[str, str]]) -> dict[str, object]:
    return {
        "object": "event",
        "id": ids.new_id("evt_"),
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {
            "call_id": call_id,
            "sip_headers": [{"name": name, "value": value} for name, value in sip_headers],
        },
    }


async def post_incoming_call(
    url: str, secret: str | None, call_id: str, sip_headers: list[tuple[str, str]]
) -> bool:
    """Post the webhook; True when the application answered 2xx."""
    event = incoming_call_event(call_id, sip_headers)
    body = json.dumps(event).encode()
    webhook_id, timestamp = str(event["id"]), int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
    }
    if secret:
        headers["webhook-signature"] = sign(secret, webhook_id, timestamp, body)
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, data=body, headers=headers) as reply,
        ):
            if 200 <= reply.status < 300:
                return True
            log.warning("call %s: the webhook %s answered %d", call_id, url, reply.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("call %s: the webhook %s failed: %s", call_id, url, exc)
    return False
