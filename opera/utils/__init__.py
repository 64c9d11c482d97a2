"""Utilities shared by opera's tools: distributed set-up, configs, logging."""
from .config import check_data_paths, load_config, replace_data_root
from .dist import get_device, init_dist
from .logger import get_root_logger

__all__ = [
    'check_data_paths', 'get_device', 'get_root_logger', 'init_dist',
    'load_config', 'replace_data_root'
]
