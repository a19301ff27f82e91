"""One module per ``rarl`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``."""
