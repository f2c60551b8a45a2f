"""Job specs (YAML), their validation and the ``python -m jobs`` command line."""
