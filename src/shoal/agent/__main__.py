import sys

from shoal.agent.worker import main

sys.exit(main())
