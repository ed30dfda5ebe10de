"""Tests of the store layer: one contract suite over every adapter, plus S3 error paths."""
