"""``python -m shoal`` and the ``shoal`` command."""

import sys


def main() -> None:
    from shoal.launch.ssh.early import connect_early

    connect_early(sys.argv[1:])
    from shoal.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
