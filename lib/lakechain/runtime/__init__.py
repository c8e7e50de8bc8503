"""Process-wide helpers: one timer, one progress printer, run ids, one per-process cache."""
