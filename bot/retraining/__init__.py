"""Retraining on new chat logs: training pairs from the logs, a fine-tuning job in its own process,
an evaluation gate, versioned checkpoints with hot swap and rollback, and a persistent scheduler.

One module per job: `pairs` (logs -> training pairs), `blocklist`, `collect` (the pairs a run
trains on, as the fine-tuned model reads them, and the held-out split), `contract` (the job and
result that cross to the worker process), `worker` (the training process, or one rank of a
data-parallel one), `launch` (the launcher of the ranks), `process` (running it with a time limit
and cancellation), `gate` (the promotion decision), `runs` (a run's metrics and
records), `job` (one run from lock to promotion), `versions` (version directories and the
registry), `recovery` (runs whose process died), `service` (jobs inside a long-running process),
`scheduler` (APScheduler with its job store in the app database, run by the leading process of
`bot.roles`), `report` and `notify` (results
as text, and to the admins on Telegram).
"""
