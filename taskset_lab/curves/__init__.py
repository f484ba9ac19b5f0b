"""The curve store (Parquet parts, atomic writes, filtered reads) and curve collection."""

from taskset_lab.curves.collect import collect_curves, work_items
from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.curves.store import (
    list_parts,
    part_done,
    part_name,
    read_curves,
    read_runs,
    write_part,
)

__all__ = ["CollectionSpec", "collect_curves", "list_parts", "part_done", "part_name", "read_curves", "read_runs",
           "work_items", "write_part"]
