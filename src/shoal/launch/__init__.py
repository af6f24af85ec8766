"""Starting and stopping worker agents: local processes for now."""

from shoal.launch.local import LocalWorkers

__all__ = ["LocalWorkers"]
