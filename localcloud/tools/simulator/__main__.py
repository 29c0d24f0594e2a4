"""`python -m localcloud.tools.simulator ...`"""

import sys

from localcloud.tools.simulator.cli import main

sys.exit(main())
