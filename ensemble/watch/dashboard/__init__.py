"""``ensemble dashboard``: a read-only web page for watching and understanding an ensemble.

Parts: :mod:`~ensemble.watch.dashboard.server` (the HTTP server, the token, the routes),
:mod:`~ensemble.watch.dashboard.data` (what the pages show, from the read-only store),
:mod:`~ensemble.watch.dashboard.layout`, :mod:`~ensemble.watch.dashboard.pages` and
:mod:`~ensemble.watch.dashboard.table` (HTML), :mod:`~ensemble.watch.dashboard.svg` (charts) and
:mod:`~ensemble.watch.dashboard.assets` (the style sheet and the polling script).
"""
