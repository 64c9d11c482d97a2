from .keypoint import *  # noqa: F401,F403
from .bbox import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .hooks import *  # noqa: F401,F403
