"""cpv's test suite (a package so that helpers such as ``tests.s3server`` import cleanly)."""
