"""A simulated Bitrix24 cloud portal, built from ``shared/docs/bitrix24-api.md`` (not from our schemas).

It reproduces webhook and OAuth auth (rotating refresh tokens, 401 codes), the envelope with ``time``,
errors by code and status, the leaky bucket (503 QUERY_LIMIT_EXCEEDED) and operating-time 429,
``batch`` semantics, 50-row paging with ``start=-1``, contacts with multifields, the PHONE filter,
``crm.duplicate.findbycomm``, userfields, timeline comments, ``im.*``, the Open Lines connector and
``event.bind`` with an operator stand-in that POSTs ONIMCONNECTORMESSAGEADD.

Control API (no auth), all JSON:

- ``GET  /_sandbox/contacts`` / ``/_sandbox/contacts/{id}``: records with every multifield.
- ``GET  /_sandbox/chats``: chats with messages; ``GET /_sandbox/openlines``: connectors, lines,
  handlers and, per ``connector|line|external_chat_id``, the chat id and its messages.
- ``GET  /_sandbox/calls``: ``{calls:[{method,status,error,identity,batch,host,ts}], requests, rate_limited,
  counts{method:n}, inner_counts{method:n}, oauth_refreshes}``.
- ``POST /_sandbox/reset``.  ``GET|POST|DELETE /_sandbox/faults``: POST one of
  ``{"kind":"latency","seconds":s,"method"?,"count"?}``,
  ``{"kind":"error","status":500,"code":"","description":"…","method"?,"count"?}``,
  ``{"kind":"storm","seconds":N}``, ``{"kind":"commit_then_timeout","method":m,"count":k,"seconds":delay}``,
  ``{"kind":"operating","method":m,"seconds":s}``, ``{"kind":"redirect","location":"http://host:port",
  "count":k}`` (302 to another origin: a moved portal), ``{"kind":"refuse_element","match":text,"count":k}``
  (``imconnector.send.messages`` answers ``SUCCESS: false`` for the next k elements whose text contains
  ``match``, the rest of the call goes through); DELETE clears.
- ``GET|POST /_sandbox/settings``: ``{rate, burst, rate_limit, operation_time_limit, access_ttl}``.
- ``POST /_sandbox/operator/reply``: ``{"text", "chat_id"? | "external_chat_id"?, "connector"?,
  "operator_name"?}`` -> ``{chat_id, message_id, deliveries:[{handler, status|error}]}``.
- ``POST /_sandbox/oauth/expire``: every access token expires now.  ``GET /_sandbox/credentials``.
"""

from __future__ import annotations

from sandbox.bitrix24.command import cli
from sandbox.bitrix24.oauth import OAuthCredentials
from sandbox.bitrix24.server import Bitrix24Simulator

__all__ = ["Bitrix24Simulator", "OAuthCredentials", "cli"]
