"""The task stage: tables of questions and image prompts run through the chains on Spark.

Pure modules (tested without Spark): ``parse`` (input → tasks, error rows for bad lines),
``retry`` (backoff policy), ``ratelimit`` (RPM/TPM token buckets), ``execute`` (one
partition: one retrieval batch, bounded concurrency), ``results`` (table schemas, rows,
SQL views), ``report`` (run planning, progress, report). Spark layer: ``worker`` (the
``mapInPandas`` function) and ``stage`` (:func:`~lakechain.tasks.stage.run_tasks`).

Nothing here imports Spark at package import, so executors load only what they use.
"""
