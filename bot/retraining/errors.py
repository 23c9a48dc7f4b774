"""Retraining errors a user or admin can act on: the CLI prints them as one line and exits 2."""


class RetrainError(Exception):
    """A retraining (or schedule) request that cannot be carried out as asked."""


class NotEnoughPairsError(RetrainError):
    """Fewer new training pairs than `retrain.min_new_pairs` (and the run was not forced)."""

    def __init__(self, found: int, needed: int) -> None:
        super().__init__(
            f"only {found} new training pair{'' if found == 1 else 's'} since the last run, "
            f"need {needed} (force a run to train on them anyway)"
        )
        self.found = found
        self.needed = needed


class InvalidScheduleError(RetrainError, ValueError):
    """A malformed cron expression, or a schedule id that does not exist."""
