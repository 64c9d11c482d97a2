"""The one call by which a training epoch reaches a detector's head."""


class QueryGroupEpochMixin:
    """``set_epoch`` for detectors whose head may follow an epoch schedule
    (query groups with a ``repeats_schedule``: the hybrid-epoch scheme).

    ``opera.QueryGroupScheduleHook`` calls it before every training
    iteration; scripts that train without the runner call it themselves.
    """

    def set_epoch(self, epoch):
        """Tell the head the (0-based) training epoch.

        Returns:
            str | None: The head's description of what the epoch sets (its
            query groups' K per decoder layer), for the log.
        """
        return self.bbox_head.set_epoch(epoch)
