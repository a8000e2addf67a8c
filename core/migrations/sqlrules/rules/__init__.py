"""The MS rules, one module per rule or per small family; importing this package registers every one of them."""
from . import (add_column, backfill, column_type, constraints, drops, indexes, partitions, renames, rewrites,
               transactions)

__all__ = ["add_column", "backfill", "column_type", "constraints", "drops", "indexes", "partitions", "renames",
           "rewrites", "transactions"]
