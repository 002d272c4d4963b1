"""Pure pytree -> pytree growth transforms for `config.init_from`; the table is `growth/registry.py`."""
