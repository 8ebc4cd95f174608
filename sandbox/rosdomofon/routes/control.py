"""The ``/_sandbox`` control API (no auth): drive subscribers, read the call log, inject faults.

=====================================================  ===============================================
``GET    /_sandbox/info``                               credentials, company, topics, token lifetime
``GET    /_sandbox/accounts``                           ``[{id, number, blocked, abonentId, phone, flats}]``
``GET    /_sandbox/subscribers``                        ``[{abonentId, phone, accountIds}]``
``GET    /_sandbox/subscribers/{id}/messages``          history, newest first, with ``source``
``POST   /_sandbox/subscribers/{id}/send``              ``{text, channel?, imageUrl?}`` → ``{topic, offset,
                                                        partition, messageId, payload}`` (409 w/o Kafka)
``GET    /_sandbox/calls`` / ``DELETE``                 ``{calls: [{method, path, endpoint, status, at,
                                                        fault}], counts, ok_counts}`` / reset
``GET    /_sandbox/faults`` / ``POST`` / ``DELETE``     read / merge settings (see ``FaultSettings``) / clear
``POST   /_sandbox/tokens/expire``                      ``{expired: n}``
``GET    /_sandbox/kafka/out``                          MESSAGES_OUT records consumed (+ rejects)
``GET    /_sandbox/signups``                            sign-ups with their current status
``POST   /_sandbox/signups/{id}/publish``               produce it to SIGN_UPS_<company> and SIGN_UPS_ALL
``GET    /_sandbox/pictures/{name}``                    a small PNG (what a demo ``imageUrl`` names)
=====================================================  ===============================================
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from sandbox.rosdomofon.context import Sim, SimContext
from sandbox.rosdomofon.kafka_side import KafkaSideError, SubscriberApp

router = APIRouter(prefix="/_sandbox")


def _kafka_required(sim: SimContext) -> SubscriberApp:
    if sim.kafka is None:
        raise HTTPException(409, detail="the simulator was started without --kafka")
    return sim.kafka


# A 1x1 grey PNG: the picture behind the demo subscriber's imageUrl (the portal downloads it by URL).
PICTURE = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b550000000a494441"
    "54789c636800000082008177cd72b60000000049454e44ae426082"
)


@router.get("/pictures/{name}")
def picture(name: str) -> Response:
    return Response(PICTURE, media_type="image/png")


@router.get("/info")
def info(sim: Sim) -> Any:
    kafka = sim.kafka
    return {
        "username": sim.username,
        "password": sim.password,
        "company": sim.company_short_name,
        "companyId": sim.company_id,
        "tokenLifetime": sim.tokens.lifetime,
        "tokensIssued": sim.tokens.issued,
        "kafka": None if kafka is None else {
            "bootstrap": kafka.bootstrap, "messagesIn": kafka.topic_in, "messagesOut": kafka.topic_out,
            "signUps": [kafka.topic_signups, "SIGN_UPS_ALL"],
        },
    }  # fmt: skip


@router.get("/accounts")
def accounts(sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        return [
            {
                "id": a.id, "number": a.number, "blocked": a.blocked, "abonentId": a.owner_id,
                "phone": w.abonents[a.owner_id].phone, "company": w.companies[a.company_id].short_name,
                "flats": [{"id": f.id, "flatNumber": f.flat_number, "entranceId": f.entrance_id}
                          for f in w.flats_of_account(a.id)],
            }
            for a in w.accounts.values()
        ]  # fmt: skip


@router.get("/subscribers")
def subscribers(sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        return [
            {"abonentId": s.id, "phone": s.phone, "accountIds": [a.id for a in w.accounts_of(s.id)]}
            for s in w.abonents.values()
        ]


@router.get("/subscribers/{abonent_id}/messages")
def history(abonent_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        if abonent_id not in w.abonents:
            raise HTTPException(404, detail=f"abonent {abonent_id} not found")
        return [
            {"id": m.id, "channel": m.channel, "incoming": m.incoming, "message": m.text,
             "messageDate": m.date_ms, "source": m.source}
            for m in w.history(abonent_id)
        ]  # fmt: skip


@router.post("/subscribers/{abonent_id}/send")
async def send(abonent_id: int, request: Request, sim: Sim) -> Any:
    body = await request.json()
    text = body.get("text") if isinstance(body, dict) else None
    image_url = body.get("imageUrl") if isinstance(body, dict) else None
    if not isinstance(text, str) or not (text or image_url):
        raise HTTPException(400, detail="text (a string; non-empty unless imageUrl is given) is required")
    if image_url is not None and not isinstance(image_url, str):
        raise HTTPException(400, detail="imageUrl must be a string")
    kafka = _kafka_required(sim)
    if abonent_id not in sim.world.abonents:
        raise HTTPException(404, detail=f"abonent {abonent_id} not found")
    try:
        return kafka.send_from_subscriber(abonent_id, text, body.get("channel") or "support", image_url)
    except KafkaSideError as exc:
        raise HTTPException(503, detail=str(exc)) from exc


@router.get("/calls")
def calls(sim: Sim) -> Any:
    return sim.calls.snapshot()


@router.delete("/calls")
def reset_calls(sim: Sim) -> Any:
    sim.calls.reset()
    return {"reset": True}


@router.get("/faults")
def faults(sim: Sim) -> Any:
    return asdict(sim.faults.settings)


@router.post("/faults")
async def set_faults(request: Request, sim: Sim) -> Any:
    body = await request.json()
    if not isinstance(body, dict):
        raise HTTPException(400, detail="a JSON object of fault settings is expected")
    try:
        return asdict(sim.faults.update(**body))
    except (TypeError, ValueError) as exc:
        raise HTTPException(400, detail=str(exc)) from exc


@router.delete("/faults")
def clear_faults(sim: Sim) -> Any:
    return asdict(sim.faults.clear())


@router.post("/tokens/expire")
def expire_tokens(sim: Sim) -> Any:
    return {"expired": sim.tokens.expire_all()}


@router.get("/kafka/out")
def kafka_out(sim: Sim) -> Any:
    return list(_kafka_required(sim).out_records)


@router.get("/signups")
def signups(sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        return [asdict(s) for s in w.signups.values()]


@router.post("/signups/{signup_id}/publish")
def publish_signup(signup_id: int, sim: Sim) -> Any:
    kafka = _kafka_required(sim)
    signup = sim.world.signups.get(signup_id)
    if signup is None:
        raise HTTPException(404, detail=f"sign-up {signup_id} not found")
    try:
        return kafka.publish_signup(signup)
    except KafkaSideError as exc:
        raise HTTPException(503, detail=str(exc)) from exc


__all__ = ["router"]
