from .builder import (BBOX_ASSIGNERS, MATCH_COST, build_assigner,
                      build_match_cost)

__all__ = ['BBOX_ASSIGNERS', 'MATCH_COST', 'build_assigner', 'build_match_cost']
