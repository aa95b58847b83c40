"""Example handlers for `sealq run --handler`; copy one to start your own."""
