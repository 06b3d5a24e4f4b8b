"""The front door: what the server and the app bound before a request reaches a route
(header size and time, body size and time, WebSocket message size)."""
