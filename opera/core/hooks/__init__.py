from .query_group_schedule import QueryGroupScheduleHook

__all__ = ['QueryGroupScheduleHook']
