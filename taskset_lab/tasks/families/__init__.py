"""Task families. Importing this package imports every module in it, which registers each
family with the task registry (so a new family is one new module, no list to edit)."""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
