"""``lakechain eval``: retrieval and answer quality of the current index on a question set.

Pure parts: ``metrics`` (per-question scores, summaries) and ``run`` (retrieve and answer
through the chains, one batch per mode). The Spark layer, ``stage.run_eval``, reads the
questions (jsonl or table) and appends one ``eval_results`` row per question and config.
"""
