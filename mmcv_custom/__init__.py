"""What opera needs from mmcv 1.7 that mmcv itself lacks or gets wrong on
current torch: kept apart so it can be dropped when mmcv is fixed."""
from .parallel import DeviceAgnosticDDP

__all__ = ['DeviceAgnosticDDP']
