"""Tests of the configuration loader and leadhub check."""
