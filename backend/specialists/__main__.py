"""`python -m backend.specialists import FILE`: import a specialists file into the database."""

import sys

from backend.governance.cli import specialists_main

sys.exit(specialists_main(sys.argv[1:]))
