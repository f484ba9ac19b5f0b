"""TaskSet's fixed (hand-designed) tasks, each registered under TaskSet's name with
:func:`taskset_lab.tasks.registry.fixed_task`. Importing this package registers them all."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
