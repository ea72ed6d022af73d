"""The `caloforge` command line: one module per sub-command, each a thin front over library functions."""
