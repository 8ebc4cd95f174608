"""What we keep in Redis: every key (``keys``), effect markers and leases, the in-flight ledger, dead
letters, the phone → account index and subscriber facts. Each module takes its Redis client as an
argument or from ``tasks.runtime.resources``."""
