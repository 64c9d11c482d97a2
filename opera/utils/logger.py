"""The package-wide logger."""
import logging

from mmcv.utils import get_logger

LOGGER_NAME = 'opera'


def get_root_logger(log_file=None, log_level=logging.INFO):
    """Return the 'opera' logger, setting it up on the first call.

    Only the first call adds handlers: pass ``log_file`` there to get a file
    log as well. In distributed runs, ranks other than 0 log errors only.
    """
    return get_logger(LOGGER_NAME, log_file=log_file, log_level=log_level)
