"""The figures, as pure functions over polars frames: latency and reliability (``timing``, ``stats``),
cost (``spend``), answer quality (``answers``, ``embeddings``, ``judging``) and compatibility
(``compat_checks``, ``scorecard``, ``evidence``); ``outcome`` is the one definition of success."""
