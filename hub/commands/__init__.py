"""One module per ``leadhub`` subcommand, each with ``run(args: argparse.Namespace) -> int``."""
