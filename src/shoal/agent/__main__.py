import sys

from shoal.agent.start import main

sys.exit(main())
