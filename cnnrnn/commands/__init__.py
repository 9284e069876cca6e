"""Subcommands of the model families and tools beyond the main CNNRNN job.

Each module here defines ``add_commands(sub)``, which adds its parsers to the ``cnnrnn`` command line
(see :data:`cnnrnn.cli.COMMAND_MODULES`). A parser sets ``handler=fn`` with ``fn(args, progress) -> int``;
the handler only parses arguments and calls the library, importing heavy modules lazily.
"""
