"""Preparing runs: run directories from the input decks (:mod:`~ensemble.prep.rundir`), the
application-interface hooks (:mod:`~ensemble.prep.hooks`), dry runs and ``prepare``.

Below the setup directory's management and the engine; it imports only the spec and the store."""
