"""Errors in what the user asked for, and the one wrapper every launcher runs its `main` through.

`UserError` is the base of the project's user-facing errors (ConfigError, GrowthError,
NonFiniteLossError, CheckpointError, ...): a config value, a file or a workdir that is not what
was expected, with a message that names it and says what to do. `run_main(main)` runs an absl
`main` and prints such an error as one line, `error: <message>`, exiting with status 1; with
`--debug` the traceback is shown as well. Any other exception is a bug and keeps its traceback.
An unknown `--config.<key>` override (ml_collections raises it while the launcher defines its
flags, before `main` runs) is reported the same way by `config_file_flag`.
"""

import sys


class UserError(Exception):
    """Bad input from the user (config, file, workdir); printed by launchers as one line."""


class InputFileError(UserError, ValueError):
    """A file the user named (e.g. `data.eval_file`) is missing or malformed."""


def one_line(message: str) -> str:
    """`message` on one line: lines joined with '; ', surrounding quotes of a KeyError removed."""
    lines = [line.strip() for line in str(message).strip().strip("'\"").splitlines() if line.strip()]
    return "; ".join(lines)


def _fail(message: str) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(1)


def _unknown_config_key(error: BaseException, argv) -> str | None:
    """The one-line message for ml_collections' unknown-key error (KeyError or AttributeError
    raised in config_dict, whose text has a "Did you mean" suggestion), or None if it is not one."""
    if not isinstance(error, KeyError | AttributeError):
        return None
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or "ml_collections" not in tb.tb_frame.f_code.co_filename:
        return None
    text = one_line(str(error).replace("\\n", "\n").replace("\\'", "'"))
    key = text.split(";", 1)[0].strip("'\"")
    flag = next((a.split("=", 1)[0] for a in argv if a.startswith("--") and "." in a
                 and key in a.split("=", 1)[0].split(".")), None)
    return f"unknown config key {key!r}" + (f" in {flag}" if flag else "") + "".join(
        f"; {part.strip()}" for part in text.split(";")[1:])


def config_file_flag(name: str, default: str | None, help_string: str) -> None:
    """`config_flags.DEFINE_config_file`, reporting an unknown `--<name>.<key>` in one line
    (ml_collections applies the overrides to the default config while the flag is defined)."""
    from ml_collections import config_flags

    try:
        config_flags.DEFINE_config_file(name, default, help_string)
    except (KeyError, AttributeError) as e:
        message = _unknown_config_key(e, sys.argv)
        if message is None or "--debug" in sys.argv:
            raise
        _fail(message)


def run_main(main) -> None:
    """`absl.app.run(main)` with the project's errors as one `error: ...` line (exit status 1)."""
    from absl import app, flags

    if "debug" not in flags.FLAGS:
        flags.DEFINE_bool("debug", False, "Show the traceback of a user error (config, file, workdir).")

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except (KeyError, AttributeError) as e:  # an unknown --config.<key> of a given config file
            message = _unknown_config_key(e, argv)
            if message is None or "--debug" in argv:
                raise
            _fail(message)

    def wrapped(argv):
        from absl import logging

        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # Orbax logs every save and restore at INFO
        try:
            return main(argv)
        except UserError as e:
            if flags.FLAGS.debug:
                raise
            _fail(str(e))

    app.run(wrapped, flags_parser=parse)
