"""`python -m services.cli ...`: how the tools and tests start services and commands."""

import sys

from services.cli import main

sys.exit(main())
