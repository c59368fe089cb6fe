"""oauthtok: create, store, refresh and hand out OAuth2 access tokens."""

__version__ = "0.1.0"
