"""`python -m localcloud.simulator ...`"""

import sys

from localcloud.simulator.cli import main

sys.exit(main())
