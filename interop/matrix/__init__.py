"""The interop matrix: `python3 -m matrix` with interop/ on PYTHONPATH (interop/run matrix)."""
