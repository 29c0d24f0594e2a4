"""`python -m localcloud ...` is the `localcloud` command."""

from localcloud.tools.cli import main

main()
