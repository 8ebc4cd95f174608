"""What we keep in Redis: every key (``keys``), effect markers and leases, the in-flight ledger, dead
letters, the phone → account index, subscriber facts, and per reply what its send saw before it
(``reply_sends``) and its dialog's order (``reply_order``). Each module takes its Redis client as an
argument or from ``tasks.runtime.resources``."""
