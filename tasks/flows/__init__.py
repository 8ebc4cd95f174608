"""Multi-step flows: the incoming subscriber message chain and the operator reply.

Operator replies: ``reply_intake`` (an event's replies, published once whichever source brought them),
``operator_reply`` (the send and the delivery report), ``reply_history`` (our own send recognised by
a new history id), ``offline_events`` (the portal's offline queue, polled by beat when enabled)."""
