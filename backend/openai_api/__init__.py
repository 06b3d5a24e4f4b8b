"""The OpenAI-compatible API's wire format: requests, responses, stream chunks and errors.

Routes live in `backend/routes/openai_compat.py`; this package only translates between
OpenAI's Chat Completions shapes and the portal's own chat types.
"""
