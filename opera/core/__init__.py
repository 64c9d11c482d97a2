from .keypoint import *  # noqa: F401,F403
from .bbox import *  # noqa: F401,F403
