"""Golden tests of the shipped mappings."""
