"""Training loop shared by `edgekd train` and `edgekd distill`."""
