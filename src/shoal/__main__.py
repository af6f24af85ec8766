"""``python -m shoal`` and the ``shoal`` command."""

import sys


def main() -> None:
    args = sys.argv[1:]
    try:
        if any(a == "--hosts" or a.startswith("--hosts=") for a in args):
            # Only then: the ssh modules cost every other command a few milliseconds.
            from shoal.launch.ssh.early import connect_early

            connect_early(args)
        from shoal.cli import main as cli
    except KeyboardInterrupt:  # Ctrl-C while shoal loads: the same exit as at any other time
        sys.exit(130)
    cli()


if __name__ == "__main__":
    main()
