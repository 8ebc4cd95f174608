"""The simulator's routes, at module level, grouped by resource: ``auth`` (token endpoint, bearer
check), ``accounts``, ``flats``, ``services`` (and connections), ``entrances``, ``messages``,
``signups``; ``operator`` puts them together under their prefixes; ``control`` is ``/_sandbox``.
``inputs`` reads bodies and paging as the real server does. Each handler takes the simulator's
:class:`sandbox.rosdomofon.context.SimContext` as a ``Sim`` parameter (from ``app.state.sim``).
"""
