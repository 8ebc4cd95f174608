"""A stateful simulator of the RosDomofon operator API and its Kafka side, built from
docs/rosdomofon-api.md (not from our ``schemas/``), so it catches our mistakes. Its answers parse with
the upstream ``rosdomofon`` package's models (tests/sandbox/test_rosdomofon_contract.py drives it with
that package's client).

Modules: ``state`` (the world), ``generator`` (deterministic data), ``views`` (wire shapes),
``routes`` (the operator REST API by resource, and ``routes.control``, the ``/_sandbox`` API),
``context`` (what the routes share), ``tokens``, ``faults`` (faults + call log), ``kafka_side``
(subscriber-app stand-in), ``app``, ``server`` (:class:`RosDomofonSimulator`), ``command`` (``cli``,
the ``rdb24 sandbox rosdomofon`` command).
"""

from __future__ import annotations

from sandbox.rosdomofon.command import cli
from sandbox.rosdomofon.server import RosDomofonSimulator

__all__ = ["RosDomofonSimulator", "cli"]
