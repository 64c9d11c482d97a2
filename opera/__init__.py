"""opera: one codebase for hybrid-matching DETRs (H-Deformable-DETR, H-PETR).

Importing the package registers every module, so configs can name
``opera.X`` next to ``mmdet.X`` and ``mmcv.X``.
"""
import warnings

# mmcv 1.7 announces its 2.0 rename on every import; we pin 1.x on purpose.
warnings.filterwarnings('ignore', message='On January 1, 2023, MMCV')

import mmcv  # noqa: E402
import mmdet  # noqa: E402

from .version import __version__, version_info  # noqa: E402

MMCV_MIN, MMCV_MAX = '1.5.3', '1.8.0'
MMDET_MIN, MMDET_MAX = '2.25.0', '3.0.0'


def _check_version(name, found, low, high):
    from mmcv.utils import digit_version
    if not digit_version(low) <= digit_version(found) < digit_version(high):
        raise ImportError(
            f'{name}=={found} is installed, but opera needs '
            f'{low} <= {name} < {high}. Run `bash tools/install.sh`.')


_check_version('mmcv-full', mmcv.__version__, MMCV_MIN, MMCV_MAX)
_check_version('mmdet', mmdet.__version__, MMDET_MIN, MMDET_MAX)

from . import apis, core, datasets, models  # noqa: E402,F401  (registration)

__all__ = ['__version__', 'version_info']
