"""`python -m backend.audit verify`: check the audit chain (the code is in backend/governance)."""
