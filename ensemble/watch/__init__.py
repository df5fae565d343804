"""Watching an ensemble: the terminal view (:mod:`~ensemble.watch.terminal`), progress bars
(:mod:`~ensemble.watch.progress`), plots (:mod:`~ensemble.watch.plots`) and the web dashboard
(:mod:`~ensemble.watch.dashboard`).  Faces: they read the store and call the facade."""
