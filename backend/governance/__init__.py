"""Governed specialists: versions in the database, four-eyes approval, the audit chain."""
