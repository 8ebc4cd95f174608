"""The simulator's HTTP routes, one module per surface: ``rest`` (every REST method), ``authorization``
(the OAuth server), ``control`` (``/_sandbox``). Handlers live at module level and reach the simulator
through ``host.Sim`` (``app.state.sim``); ``errors`` shapes the portal's error bodies."""
