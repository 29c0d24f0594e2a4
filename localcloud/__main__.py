"""`python -m localcloud ...` is the `localcloud` command."""

from localcloud.cli import main

main()
