"""Monitor core: interaction maps, shift statistics (and, as they land, sampling, budgets and the store)."""

from .maps import InteractionMap, KeyStats
from .shift import Contributor, ShiftReport, compare_maps, first_order_ndcg

__all__ = ["Contributor", "InteractionMap", "KeyStats", "ShiftReport", "compare_maps", "first_order_ndcg"]
