"""The gameproto test suite: ``python -m twisted.trial tests`` (or ``make test``)."""
