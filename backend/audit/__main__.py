"""`python -m backend.audit verify`: report the audit chain's first broken link, if any."""

import sys

from backend.governance.cli import audit_main

sys.exit(audit_main(sys.argv[1:]))
