"""The PII guard: validated detectors and the mask/restore policy, pure functions over text."""
