"""Running the engine and obtaining allocations for it: which launcher, executor and provider
(:mod:`~ensemble.alloc.backends`, :mod:`~ensemble.alloc.routing`), a manager process
(:mod:`~ensemble.alloc.execution`), allocation chains with repeats (:mod:`~ensemble.alloc.chain`),
automatic allocations (:mod:`~ensemble.alloc.autoalloc`) and job arrays
(:mod:`~ensemble.alloc.arrays`).  Above the engine, below the :class:`~ensemble.Ensemble` facade."""
