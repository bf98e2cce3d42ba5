"""Server-side auth: who is calling (token or client certificate) and what they may call."""
