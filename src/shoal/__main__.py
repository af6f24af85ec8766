"""``python -m shoal`` and the ``shoal`` command."""

import sys


def main() -> None:
    try:
        from shoal.launch.ssh.early import connect_early

        connect_early(sys.argv[1:])
        from shoal.cli import main as cli
    except KeyboardInterrupt:  # Ctrl-C while shoal loads: the same exit as at any other time
        sys.exit(130)
    cli()


if __name__ == "__main__":
    main()
