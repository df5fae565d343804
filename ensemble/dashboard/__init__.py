"""``ensemble dashboard``: a read-only web page for watching and understanding an ensemble.

Parts: :mod:`~ensemble.dashboard.server` (the HTTP server, the token, the routes),
:mod:`~ensemble.dashboard.data` (what the pages show, from the read-only store),
:mod:`~ensemble.dashboard.layout`, :mod:`~ensemble.dashboard.pages` and
:mod:`~ensemble.dashboard.table` (HTML), :mod:`~ensemble.dashboard.svg` (charts) and
:mod:`~ensemble.dashboard.assets` (the style sheet and the polling script).
"""
