"""What the trainer trains: the ``Task`` protocol, its registry, and the task families
(``lm``: language modelling; ``classification``: LRA and s/psMNIST classification and
retrieval; ``synthetic``: the memory tasks). Task modules register themselves when
imported; ``get_task`` imports them on first lookup."""

from seqjax.tasks.registry import Task, get_task, register_task, task_names

__all__ = ["Task", "get_task", "register_task", "task_names"]
