"""Multi-task learning (the MTL pipeline): datasets whose samples carry every task's label, a
shared backbone with one head per task, loss-weighting / gradient-surgery algorithms, AdaTask
optimizers (per-task adaptive state for shared parameters), and the metrics Δm and AU/rAU.

"Task" in this package means an MTL task (one head, one loss), never a TaskSet task; config
groups and fields are prefixed with ``mtl_`` for that reason.
"""
