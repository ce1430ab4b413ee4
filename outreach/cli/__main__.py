"""`python -m outreach.cli`, as the `outreach` script."""

import sys

from outreach.cli import main

main()
sys.exit(0)
