"""Reading what ran: run and attempt tables (:mod:`~ensemble.results.summaries`), reports,
failures and their logs, and post-processing (:mod:`~ensemble.results.analysis`).  Read-only over
the store."""
