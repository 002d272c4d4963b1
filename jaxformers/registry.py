"""Name -> implementation tables through which configs select layers, data, losses and transforms."""

import importlib


class Registry(dict):
    """A dict of named implementations with a decorator to add one and a lookup that explains.

    field: the config field that names an entry (for error messages, e.g. "config.objective").
    populate: a module whose import registers the built-in entries (imported on first lookup).
    """

    def __init__(self, field: str, populate: str | None = None):
        super().__init__()
        self.field, self.populate = field, populate

    def register(self, name: str):
        def wrap(obj):
            if name in self and self[name] is not obj:
                raise ValueError(f"{self.field}: {name!r} is already registered as {self[name]!r}")
            self[name] = obj
            return obj

        return wrap

    def get(self, name: str):
        if self.populate:
            importlib.import_module(self.populate)
        if name not in self:
            raise ValueError(f"{self.field}={name!r}; expected one of {sorted(self)}")
        return self[name]
