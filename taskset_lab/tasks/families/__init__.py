"""Task families. Importing this package registers every family with the task registry."""

from taskset_lab.tasks.families import char_rnn, conv_pooling, mlp, quadratic, two_d  # noqa: F401
