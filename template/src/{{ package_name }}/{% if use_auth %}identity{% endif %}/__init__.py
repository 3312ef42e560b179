"""Identity: who calls the API, and what they may do, from OpenID Connect bearer tokens.

docs/AUTH.md covers the settings, the issuers it was checked with, development tokens
and what is logged.
"""
