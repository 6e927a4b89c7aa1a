"""Test-suite root: its presence puts ``tests/`` on ``sys.path`` so suites share ``loopback_support``."""
