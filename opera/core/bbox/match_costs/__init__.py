from .keypoint_costs import KptL1Cost, OksCost

__all__ = ['KptL1Cost', 'OksCost']
