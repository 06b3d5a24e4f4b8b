"""Identity: who is asking (none, header or jwt mode, or a personal API key), what they may do."""
