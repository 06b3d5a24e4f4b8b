"""The portal's own web pages: the chat at `/` and the usage dashboard at `/ui/usage`."""
